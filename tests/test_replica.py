"""The model replica with real RocksDB and real VW: exactly-once learning and checkpoints."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from api.serving.catalogs import CatalogStore
from api.serving.replica import LEDGER, Model, ModelReplica
from engine import checkpoint
from engine.actions import with_features
from engine.features import Features
from engine.ledger import Ledger
from engine.records import TrainingExample, decode, encode
from policies.registry import build
from streams.kv import KV
from streams.settings import Settings

CATALOG = {
    "actions": [{"id": a, "features": {"banner": {"colour": a}}} for a in ("red", "blue", "gray")],
    "learning": {"reward_wait_seconds": 1.0},
}
CONTEXT: Features = {"user": {"segment": "a"}}


def example(i: int, chosen: int = 1, reward: float = 1.0) -> bytes:
    return encode(
        TrainingExample(
            event_id=f"e{i}",
            catalog="shop",
            catalog_version=1,
            context=CONTEXT,
            eligible=["red", "blue", "gray"],
            chosen=chosen,
            probability=0.5,
            reward=reward,
            rewards=1,
            reason="reward",
            decided_ts=0.0,
            emitted_ts=0.0,
        )
    )


class Replica:
    def __init__(self, data: Path, catalog: dict[str, object] = CATALOG) -> None:
        self.settings = Settings(data_dir=data)
        self.kv = KV(data / "api" / "catalogs")
        self.catalogs = CatalogStore(self.kv, self.settings.limits)
        if not self.catalogs.names():
            self.catalogs.put("shop", catalog, now=0.0)
        self.replica = ModelReplica(self.settings, self.catalogs)

    def pmf(self) -> np.ndarray:
        catalog = self.catalogs.latest("shop")
        return self.replica.policy(catalog).policy.distribution(CONTEXT, catalog.actions)

    def close(self) -> None:
        self.replica.close()
        self.kv.close()


def learned_then_closed(data: Path, n: int = 30) -> np.ndarray:
    """A replica that learned `n` examples (the third action paying) and closed; its pmf."""
    r = Replica(data)
    for offset in range(n):
        r.replica.apply(
            1, offset, None, example(offset, chosen=offset % 3, reward=float(offset % 3 == 2))
        )
    before = r.pmf()
    r.close()
    return before


def test_each_event_is_learned_once_and_poison_is_skipped(tmp_path: Path) -> None:
    r = Replica(tmp_path)
    for offset in range(20):
        r.replica.apply(0, offset, None, example(offset % 10))  # every example delivered twice
    r.replica.apply(0, 20, None, b"\x00not json")
    r.replica.apply(0, 21, None, example(99).replace(b'"chosen":1', b'"chosen":7'))
    assert r.replica.counts["learned"] == 10
    assert r.replica.counts["duplicates"] == 10
    assert r.replica.counts["poisoned"] == 1 and r.replica.counts["invalid_examples"] == 1
    assert r.replica.offsets == {0: 22}
    assert r.pmf()[1] > 0.5, "the rewarded action leads"
    r.close()


def test_a_restart_restores_model_offsets_and_ledger(tmp_path: Path) -> None:
    before = learned_then_closed(tmp_path)

    again = Replica(tmp_path)
    assert again.replica.offsets == {1: 30}
    assert np.allclose(again.pmf(), before), "the restored model decides the same"
    assert again.replica.model_version("shop") == "1.30"
    again.replica.apply(1, 30, None, example(5))  # a replayed duplicate from before the restart
    assert again.replica.counts["duplicates"] == 1
    assert again.replica.model_version("shop") == "1.30"
    again.close()


def test_a_checkpoint_from_before_the_ledger_blob_still_loads(tmp_path: Path) -> None:
    """Older checkpoints kept the ledger as a list in the header."""
    r = Replica(tmp_path)
    for offset in range(5):
        r.replica.apply(0, offset, None, example(offset))
    r.close()
    header, blobs = checkpoint.decode(r.replica.path.read_bytes())
    assert len(Ledger.decode(blobs.pop(LEDGER))) == 5
    header["ledger"] = [f"e{offset}" for offset in range(5)]  # the event ids, as then
    r.replica.path.write_bytes(checkpoint.encode(header, blobs))
    r.replica.path.with_suffix(".prev").unlink(missing_ok=True)

    again = Replica(tmp_path)
    assert again.replica.loaded_from == "model.ckpt"
    again.replica.apply(0, 5, None, example(3))  # learned before the restart
    assert again.replica.counts["duplicates"] == 1
    again.close()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_checkpoint_is_refused_and_the_previous_one_is_used(
    tmp_path: Path, damage: str
) -> None:
    r = Replica(tmp_path)
    for offset in range(10):
        r.replica.apply(0, offset, None, example(offset))
    r.replica.save_now()  # the good one, kept as .prev after the next write
    for offset in range(10, 20):
        r.replica.apply(0, offset, None, example(offset))
    r.close()
    path = r.replica.path
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        raw[len(raw) // 2] ^= 0x40
        path.write_bytes(bytes(raw))

    again = Replica(tmp_path)
    assert again.replica.loaded_from == "model.prev"
    assert again.replica.counts["corrupt_checkpoints"] == 1
    assert again.replica.offsets == {0: 10}, "replay resumes from the good checkpoint's offsets"
    assert again.replica.model_version("shop") == "1.10"
    again.close()


def test_changed_learning_settings_start_a_new_model_generation(tmp_path: Path) -> None:
    r = Replica(tmp_path)
    r.replica.apply(0, 0, None, example(1))
    assert r.replica.model_version("shop") == "1.1"
    changed = {**CATALOG, "learning": {"exploration": {"algorithm": "epsilon"}}}
    r.catalogs.put("shop", changed, now=1.0)
    assert r.replica.model_version("shop") == "1.1"
    r.pmf()  # the first decision under the new settings builds the new model
    assert r.replica.model_version("shop") == "2.0"
    r.replica.apply(0, 1, None, example(2))  # an example decided under the old settings
    assert r.replica.counts["stale_model_settings"] == 1
    r.close()


def test_a_replaced_model_is_a_new_generation_that_learns_on_and_is_checkpointed(
    tmp_path: Path,
) -> None:
    """What PUT and DELETE /model do: the catalog's model swapped for another (here a
    fresh one), a generation up, learning on from the log, and kept across a restart."""
    trained = learned_then_closed(tmp_path)
    r = Replica(tmp_path)
    catalog = r.catalogs.latest("shop")
    old = r.replica.policy(catalog)
    assert r.replica.model_version("shop") == "1.30"
    fresh = Model(old.key, build(catalog.learning), 0)
    assert r.replica.replace(catalog, fresh) is fresh
    assert r.replica.model_version("shop") == "2.0"
    assert not np.array_equal(r.pmf(), trained), "the replaced model forgot what it learned"
    r.replica.apply(1, 30, None, example(30))
    assert r.replica.model_version("shop") == "2.1"
    r.close()
    again = Replica(tmp_path)
    assert again.replica.model_version("shop") == "2.1", "the replacement was checkpointed"
    again.close()


@pytest.mark.parametrize("policy", ["linucb", "thompson"])
def test_numpy_policies_restore_from_checkpoints_and_follow_their_settings(
    tmp_path: Path, policy: str
) -> None:
    """A LinUCB or Thompson catalog's model is checkpointed and restored exactly, goes on
    when its settings are restated, and starts anew when one of them changes."""
    learning = {"reward_wait_seconds": 1.0, "policy": policy}
    r = Replica(tmp_path, {**CATALOG, "learning": learning})
    for offset in range(30):
        r.replica.apply(
            1, offset, None, example(offset, chosen=offset % 3, reward=float(offset % 3 == 2))
        )
    before = r.pmf()
    assert r.replica.models["shop"].policy.name == policy and before.argmax() == 2, before
    r.close()

    again = Replica(tmp_path)
    assert np.array_equal(again.pmf(), before), "the restored model decides the same"
    assert again.replica.model_version("shop") == "1.30"
    defaults = {"linucb": {"alpha": 1, "dim": 64}, "thompson": {"draws": 512}}[policy]
    again.catalogs.put("shop", {**CATALOG, "learning": {**learning, policy: defaults}}, now=1.0)
    assert np.array_equal(again.pmf(), before), "the same settings restated go on"
    assert again.replica.model_version("shop") == "1.30"
    changed = {"linucb": {"alpha": 0.5}, "thompson": {"smoothing": 1.0}}[policy]
    again.catalogs.put("shop", {**CATALOG, "learning": {**learning, policy: changed}}, now=2.0)
    assert not np.array_equal(again.pmf(), before)
    assert again.replica.model_version("shop") == "2.0"
    again.replica.apply(1, 30, None, example(30))  # decided under the old settings
    assert again.replica.counts["stale_model_settings"] == 1
    again.close()


def store_old_catalog(data: Path) -> None:
    """The shop catalog as version 1 on the interactions of the old default (["ca"])."""
    kv = KV(data / "api" / "catalogs")
    old = {**CATALOG, "learning": {"reward_wait_seconds": 1.0, "interactions": ["ca"]}}
    CatalogStore(kv, Settings().limits).put("shop", old, now=0.0)
    kv.close()


def test_a_model_from_before_the_id_cross_default_keeps_what_it_learned(
    tmp_path: Path,
) -> None:
    """Catalogs stored without `interactions` got ["ca"] before the default became
    ["ca", "ci"]: after the upgrade their saved model must go on, not start again."""
    store_old_catalog(tmp_path)
    before = learned_then_closed(tmp_path)

    again = Replica(tmp_path)
    again.catalogs.put("shop", CATALOG, now=1.0)  # the same catalog on the new defaults
    assert np.allclose(again.pmf(), before), "the learned weights came along"
    assert again.replica.model_version("shop") == "1.30"
    assert again.replica.models["shop"].key.endswith("--interactions ca --interactions ci")
    again.replica.apply(1, 30, None, example(30))  # decided under the old version
    assert again.replica.counts["stale_model_settings"] == 0
    assert again.replica.model_version("shop") == "1.31"
    again.close()


def test_adding_the_id_cross_to_a_live_catalog_keeps_its_model(tmp_path: Path) -> None:
    """The same rule without a restart: the model in use goes on with the cross added."""
    store_old_catalog(tmp_path)
    r = Replica(tmp_path)
    for offset in range(30):
        r.replica.apply(
            1, offset, None, example(offset, chosen=offset % 3, reward=float(offset % 3 == 2))
        )
    before = r.pmf()
    assert r.replica.model_version("shop") == "1.30"
    r.catalogs.put("shop", CATALOG, now=1.0)
    assert np.allclose(r.pmf(), before)
    assert r.replica.model_version("shop") == "1.30"
    r.close()


def test_action_features_decided_with_are_learned_with(tmp_path: Path) -> None:
    """Red pays only while its popularity feature is on: the model must learn that from
    the features the decision log carried, which the catalog itself does not have. With
    squarecb, whose pmf follows the estimated gaps (RegCB's is one-hot)."""
    squarecb = {"learning": {"reward_wait_seconds": 1.0, "exploration": {"algorithm": "squarecb"}}}
    r = Replica(tmp_path, {**CATALOG, **squarecb})
    hot = {"red": {"popularity": {"views_1h": 8.0}}}
    for i in range(60):
        popular = i % 2 == 0
        base = decode(example(i, chosen=0))
        assert isinstance(base, TrainingExample)
        raw = msgspec.structs.replace(
            base, reward=float(popular), action_features=hot if popular else {}
        )
        r.replica.apply(0, i, None, encode(raw))
    assert r.replica.counts["learned"] == 60
    catalog = r.catalogs.latest("shop")
    policy = r.replica.policy(catalog).policy
    plain = policy.distribution(CONTEXT, catalog.actions)
    joined = [with_features(a, hot.get(a.id)) for a in catalog.actions]
    assert policy.distribution(CONTEXT, joined)[0] > plain[0] + 0.2, (plain, joined)
    r.close()


def test_a_checkpoint_re_saves_only_models_that_learned_and_restores_exactly(
    tmp_path: Path,
) -> None:
    """Checkpoints reuse the saved bytes of a model that learned nothing since; one that
    learned is saved anew, so a restore from the last checkpoint decides the same."""
    r = Replica(tmp_path)
    r.catalogs.put("quiet", CATALOG, now=0.0)
    r.replica.policy(r.catalogs.latest("quiet"))  # a second model, never learning
    r.replica.apply(0, 0, None, example(0, chosen=0, reward=1.0))
    _, first = r.replica.snapshot_parts()
    for offset in range(1, 25):
        r.replica.apply(0, offset, None, example(offset, chosen=2, reward=1.0))
    _, second = r.replica.snapshot_parts()
    assert second["quiet"] is first["quiet"], "the unchanged model was not saved again"
    assert second["shop"] != first["shop"], "the model that learned was saved again"
    before = r.pmf()
    r.replica.save_now()
    r.close()

    again = Replica(tmp_path)
    assert again.replica.model_version("shop") == "1.25"
    assert np.allclose(again.pmf(), before), "the restored model decides the same"
    again.close()
