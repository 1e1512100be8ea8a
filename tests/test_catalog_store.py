"""The catalog store keeps each catalog on the defaults it was created with (real RocksDB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.serving.catalogs import CatalogStore
from api.serving.state import load_catalog_file
from engine.errors import InvalidInput, LimitExceeded
from engine.limits import Limits
from policies.registry import model_key
from streams.kv import KV

BODY: dict[str, object] = {"actions": [{"id": "a"}, {"id": "b"}]}
EDITED: dict[str, object] = {"actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}


def legacy_store(data: Path) -> None:
    """A catalog as a release before the defaults epoch stored it: the body, no epoch."""
    kv = KV(data)
    record = json.dumps({"body": BODY, "updated_at": 1.0}).encode()
    kv.write({b"v:old:%010d" % 1: record, b"l:old": b"1"})
    kv.close()


def test_a_catalog_stored_before_the_epoch_keeps_squarecb_through_edits_and_restarts(
    tmp_path: Path,
) -> None:
    legacy_store(tmp_path)
    kv = KV(tmp_path)
    store = CatalogStore(kv, Limits())
    old = store.latest("old")
    assert (old.learning.exploration.algorithm, old.learning.optimizer) == ("squarecb", "coin")
    edited, created = store.put("old", EDITED, now=2.0)
    assert not created and edited.version == 2
    assert model_key(edited.learning) == model_key(old.learning)  # the model goes on
    store.put("new", BODY, now=3.0)
    kv.close()

    kv = KV(tmp_path)
    store = CatalogStore(kv, Limits())
    assert store.latest("old").learning.exploration.algorithm == "squarecb"
    assert store.version("old", 1) == old
    new = store.latest("new")
    assert (new.learning.exploration.algorithm, new.learning.optimizer) == ("regcbopt", "adaptive")
    store.put("new", EDITED, now=4.0)
    assert model_key(store.latest("new").learning) == model_key(new.learning)
    kv.close()


def test_a_deleted_catalog_made_again_gets_the_current_defaults(tmp_path: Path) -> None:
    legacy_store(tmp_path)
    kv = KV(tmp_path)
    store = CatalogStore(kv, Limits())
    store.delete("old")
    again, created = store.put("old", BODY, now=2.0)
    assert created and again.version == 2
    assert again.learning.exploration.algorithm == "regcbopt"
    assert store.version("old", 1).learning.exploration.algorithm == "squarecb"  # type: ignore[union-attr]
    kv.close()


def test_an_unchanged_body_keeps_its_version_and_its_defaults(tmp_path: Path) -> None:
    legacy_store(tmp_path)
    kv = KV(tmp_path)
    store = CatalogStore(kv, Limits())
    same, created = store.put("old", BODY, now=2.0)
    assert not created and same.version == 1
    assert same.learning.exploration.algorithm == "squarecb"
    kv.close()


def test_a_catalog_stored_under_wider_limits_is_still_served_after_they_shrink(
    tmp_path: Path,
) -> None:
    wide = Limits(max_metadata_bytes=100_000)
    body = {"actions": [{"id": "a", "metadata": {"notes": "x" * 10_000}}, {"id": "b"}]}
    store = CatalogStore(KV(tmp_path / "c"), wide)
    store.put("big", body, 1.0)
    store.kv.close()
    reopened = CatalogStore(KV(tmp_path / "c"), Limits())  # today's 4 kB per action
    assert reopened.latest("big").version == 1, "the API starts and serves it"
    with pytest.raises(LimitExceeded) as refused:  # a new version must meet today's limits
        reopened.put("big", {**body, "learning": {"reward_wait_seconds": 5.0}}, 2.0)
    assert refused.value.field == "actions[0].metadata"
    reopened.kv.close()


def test_a_catalog_file_is_read_as_a_request_body_would_be(tmp_path: Path) -> None:
    store = CatalogStore(KV(tmp_path / "c"), Limits())
    dated = tmp_path / "launch.yaml"
    dated.write_text("actions:\n  - id: a\n    metadata: {launch: 2026-01-01}\n  - id: b\n")
    load_catalog_file(store, dated)  # a YAML date stays the string it was written as
    assert store.latest("launch").action("a").metadata == {"launch": "2026-01-01"}
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("actions:\n  - &a {id: a}\n  - *a\n")
    with pytest.raises(InvalidInput, match="alias"):
        load_catalog_file(store, bomb)
    store.kv.close()
