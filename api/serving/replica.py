"""The model replica: every serving process applies the training log to its own models.

The model is a materialised view of the training topic. Applying an example is
idempotent through the ledger (event ids already learned are skipped), and a checkpoint
holds the models, the offsets they reflect, the ledger and the broker epoch, sealed by
sha256 and written atomically. After a restart the replica loads the last good
checkpoint and replays the log from its offsets; after the broker lost its log (a new
epoch) it keeps its weights and reads the new log from the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass

from api.serving.catalogs import CatalogStore
from api.serving.follow import LogFollower
from engine import checkpoint
from engine.actions import with_features
from engine.apprentice import ApprenticeBook
from engine.catalog import Catalog
from engine.errors import CorruptCheckpoint, EngineError
from engine.experiment import Arm, arm_model
from engine.inline import actions_of
from engine.learning import Learning
from engine.ledger import Ledger
from engine.performance import Performance
from engine.records import TrainingExample
from engine.results import Results
from policies.base import Example, Policy
from policies.registry import build, continues, model_key
from streams import messages
from streams.files import write_atomic
from streams.settings import Settings
from streams.telemetry import Histogram

log = logging.getLogger(__name__)
LEDGER = "__ledger__"  # the checkpoint blob of the ledger (no catalog name starts with "_")
RESULTS = "__results__"  # the checkpoint blob of the experiments' results
PERFORMANCE = "__performance__"  # the checkpoint blob of the catalogs' performance series
APPRENTICE = "__apprentice__"  # the checkpoint blob of the apprentice tallies
FRESHNESS_SAMPLES = 2048  # the latest examples' emission-to-learning times kept


@dataclass
class Model:
    key: str
    policy: Policy
    generation: int


class ModelReplica(LogFollower):
    def __init__(
        self, settings: Settings, catalogs: CatalogStore, lag: Histogram | None = None
    ) -> None:
        super().__init__(settings.topic("training"), settings.partitions)
        self.settings = settings
        self.catalogs = catalogs
        self.path = settings.data_dir / "api" / "model.ckpt"
        self.models: dict[str, Model] = {}
        self.saved: dict[str, tuple[str, bytes, int, int]] = {}  # name -> key, bytes, n, gen
        self._blobs: dict[str, tuple[Policy, int, bytes]] = {}  # name -> policy, learned, save
        self.ledger = Ledger(settings.ledger_capacity)
        self.results = Results()  # experiments' results, from the same log
        self.performance = Performance()  # served vs uniform over time, from the same log
        self.apprentice = ApprenticeBook()  # apprentice mode's agreement and rewards
        self.epoch: str | None = None
        self.counts: Counter[str] = Counter()
        self.lag_seconds = lag  # emission-to-learning, every catalog's (for /metrics)
        self.freshness: dict[str, deque[float]] = {}  # per catalog, the latest
        self.dirty = False
        self.last_checkpoint = time.monotonic()
        self.loaded_from: str = "empty"
        self._load()

    # -- serving ---------------------------------------------------------------------

    def policy(self, catalog: Catalog) -> Model:
        """The model of the catalog's own learning settings."""
        return self._model(catalog.name, catalog.learning)

    def arm_policy(self, catalog: Catalog, arm: Arm) -> Model:
        """The model an experiment arm decides with: the catalog's own, its own (kept
        under `<catalog>~<arm>`), or the catalog's frozen when the arm first decides."""
        if arm.kind == "catalog" or arm.kind == "rule":
            return self.policy(catalog)
        name = arm_model(catalog.name, arm.name)
        if arm.kind == "frozen":
            if name not in self.models and name not in self.saved:
                base = self.policy(catalog)
                self.saved[name] = (base.key, base.policy.save(), base.policy.learned, 1)
            return self._model(name, catalog.learning)
        assert arm.learning is not None
        return self._model(name, arm.learning)

    def _model(self, name: str, learning: Learning) -> Model:
        key = model_key(learning)
        model = self.models.get(name)
        if model is not None and model.key == key:
            return model
        saved = self.saved.pop(name, None)
        generation = (model.generation + 1) if model else 1
        if model is not None:
            if continues(model.key, key):  # goes on, as it would from a checkpoint
                saved = (model.key, model.policy.save(), model.policy.learned, model.generation)
            model.policy.close()
            self.dirty = True
        if saved is not None and continues(saved[0], key):
            policy, generation = build(learning, saved[1], saved[2]), saved[3]
        else:
            policy = build(learning)
        self.models[name] = Model(key, policy, generation)
        return self.models[name]

    def replace(self, catalog: Catalog, model: Model) -> Model:
        """The catalog's model replaced by `model` (an import, or a reset to a new one) as
        a new generation; it goes on learning from the training log where this replica is.
        The old model is closed; the replaced one is checkpointed with the next save."""
        old = self.policy(catalog)  # loaded from the checkpoint if not used yet
        model.generation = old.generation + 1
        self.models[catalog.name] = model
        self.saved.pop(catalog.name, None)
        old.policy.close()
        self.dirty = True
        return model

    def unavailable(self, name: str) -> str | None:
        """Why the model of catalog `name` cannot serve yet, or None when it can: after a
        refused checkpoint the replica relearns from the start of the training log, and
        until it has caught up its model is a partial one."""
        if self.caught_up or self.loaded_from != "empty" or not self.counts["corrupt_checkpoints"]:
            return None
        learned = self.models[name].policy.learned if name in self.models else 0
        return (
            "model not loaded: the checkpoint was refused and the training log is "
            f"replaying ({learned} examples learned so far)"
        )

    def parsed_examples(self) -> int:
        """Parsed action examples the models hold (VW's cache, policies.vw)."""
        return sum(getattr(m.policy, "parsed_examples", 0) for m in self.models.values())

    def model_version(self, name: str) -> str:
        model = self.models.get(name)
        if model is not None:
            return f"{model.generation}.{model.policy.learned}"
        if name in self.saved:  # loaded from the checkpoint, not used since
            _, _, learned, generation = self.saved[name]
            return f"{generation}.{learned}"
        return "0.0"

    # -- learning --------------------------------------------------------------------

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.offsets[partition] = offset + 1
        raw = value or b""
        self.dirty = True
        message = messages.read(raw, self.counts, f"on the training log at {partition}/{offset}")
        if message is None:
            return
        if not isinstance(message, TrainingExample):
            self.counts["unexpected"] += 1
            return
        self.learn(message)

    def learn(self, ex: TrainingExample) -> bool:
        if ex.event_id in self.ledger:
            self.counts["duplicates"] += 1
            return False
        catalog = self.catalogs.version(ex.catalog, ex.catalog_version)
        if catalog is None:
            self.counts["unknown_catalog"] += 1
            return False
        try:
            current = self.catalogs.latest(ex.catalog)
        except EngineError:
            current = catalog
        if not continues(model_key(catalog.learning), model_key(current.learning)):
            self.counts["stale_model_settings"] += 1  # learned by a model since replaced
            return False
        # the actions as decided: the request's own when it sent them, else the version's
        found = actions_of(catalog, ex.actions, ex.eligible)
        if found is None or not 0 <= ex.chosen < len(ex.eligible):
            self.counts["invalid_examples"] += 1
            return False
        extra = ex.action_features
        actions = [with_features(a, extra.get(a.id)) for a in found]
        example = Example(ex.context, actions, ex.chosen, ex.probability, ex.reward)
        bounds = current.learning.exploration.reward_range()
        if ex.mode == "logging":  # decided in logging mode: kept for evaluation, not learned
            self.apprentice.observe(ex, bounds)
            self.performance.observe(ex)
            self.counts["logging_only"] += 1
            self.ledger.add(ex.event_id)
            return False
        try:
            self.policy(current).policy.learn(example)
        except EngineError as exc:
            self.counts["invalid_examples"] += 1
            log.warning("could not learn event %s: %s", ex.event_id, exc, extra=_about(ex))
            return False
        self._learn_arms(current, example, ex)
        self.results.observe(ex, current.experiment)
        self.performance.observe(ex)
        self.apprentice.observe(ex, bounds)
        self.ledger.add(ex.event_id)
        self.counts["learned"] += 1
        lag = max(0.0, time.time() - ex.emitted_ts)
        if self.lag_seconds is not None:
            self.lag_seconds.labels(ex.catalog).observe(lag)
        self.freshness.setdefault(ex.catalog, deque(maxlen=FRESHNESS_SAMPLES)).append(lag)
        return True

    def _learn_arms(self, catalog: Catalog, example: Example, ex: TrainingExample) -> None:
        """Every arm with a model of its own learns from every decision, whichever arm made
        it: the logged probability is exact, so the importance-weighted update is unbiased
        and a challenger with a small share still learns from all the traffic."""
        if catalog.experiment is None:
            return
        for arm in catalog.experiment.arms:
            if arm.kind != "learning":
                continue
            try:
                self.arm_policy(catalog, arm).policy.learn(example)
                self.counts["arm_examples"] += 1
            except EngineError as exc:
                self.counts["invalid_arm_examples"] += 1
                log.warning(
                    "arm %s could not learn event %s: %s",
                    arm.name,
                    ex.event_id,
                    exc,
                    extra=_about(ex),
                )

    async def follow_log(self, bootstrap: str, epoch: str) -> None:
        """Follow the training topic forever, reconnecting while the broker is away."""
        if self.epoch != epoch:
            if self.epoch is not None:
                log.warning("broker log lost (new epoch): keeping weights, reading from start")
            self.epoch, self.offsets = epoch, {}
        await LogFollower.run(self, bootstrap, self.settings.fetch_wait_ms)

    def on_caught_up(self) -> None:
        log.info("model replica caught up: %d examples learned", self.counts["learned"])

    async def after_batch(self) -> None:
        if (
            self.dirty
            and time.monotonic() - self.last_checkpoint > self.settings.checkpoint_seconds
        ):
            header, blobs = self.snapshot_parts()  # VW saves on the loop, between predicts
            await asyncio.to_thread(self._write_parts, header, blobs)

    # -- checkpoints -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Models, offsets, ledger and epoch as one sealed blob."""
        return checkpoint.encode(*self.snapshot_parts())

    def snapshot_parts(self) -> tuple[dict[str, object], dict[str, bytes]]:
        """The checkpoint's header and blobs, taken on the loop; encoding can run elsewhere."""
        blobs: dict[str, bytes] = {}
        models: dict[str, object] = {}
        for name, model in self.models.items():
            blobs[name] = self._saved_blob(name, model)
            models[name] = {
                "key": model.key,
                "learned": model.policy.learned,
                "generation": model.generation,
            }
        for name, (key, data, learned, generation) in self.saved.items():
            blobs[name] = data
            models[name] = {"key": key, "learned": learned, "generation": generation}
        blobs[LEDGER] = self.ledger.encoded()
        blobs[RESULTS] = self.results.encode()
        blobs[PERFORMANCE] = self.performance.encode()
        blobs[APPRENTICE] = self.apprentice.encode()
        header: dict[str, object] = {
            "epoch": self.epoch,
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "models": models,
            "counts": dict(self.counts),
            "written_at": time.time(),
        }
        self.dirty = False
        return header, blobs

    def _saved_blob(self, name: str, model: Model) -> bytes:
        """The model saved, re-saved only when it learned since its last save: a VW save
        blocks the loop (2.5 ms at 50 x 20, 6.5 ms at 200 x 1,000), and a checkpoint
        used to save every catalog's model every time. A model that learned nothing
        since is the same model at the checkpoint's offsets, so its blob is exact."""
        policy = model.policy
        cached = self._blobs.get(name)
        if cached is None or cached[0] is not policy or cached[1] != policy.learned:
            cached = self._blobs[name] = (policy, policy.learned, policy.save())
        return cached[2]

    def save_now(self) -> None:
        self._write(self.snapshot())

    def _write_parts(self, header: dict[str, object], blobs: dict[str, bytes]) -> None:
        self._write(checkpoint.encode(header, blobs))

    def _write(self, blob: bytes) -> None:
        """Keep the previous checkpoint as `.prev`: if the new one is ever unreadable,
        the loader falls back to it and replays the log from its offsets."""
        if self.path.exists():
            os.replace(self.path, self.path.with_suffix(".prev"))
        write_atomic(self.path, blob)
        self.last_checkpoint = time.monotonic()
        self.counts["checkpoints"] += 1

    def _load(self) -> None:
        refused = 0
        for path in (self.path, self.path.with_suffix(".prev")):
            if not path.exists():
                continue
            try:
                header, blobs = checkpoint.decode(path.read_bytes())
                self._restore(header, blobs)
                self.loaded_from = path.name
                log.info("loaded checkpoint %s: %d examples", path, self.counts["learned"])
                break
            except CorruptCheckpoint as exc:
                refused += 1
                log.error("refused checkpoint %s: %s", path, exc)
        self.counts["corrupt_checkpoints"] += refused

    def _restore(self, header: dict[str, object], blobs: dict[str, bytes]) -> None:
        models = header.get("models")
        offsets = header.get("offsets")
        # the ledger is a blob of its own; checkpoints before it kept a list in the header
        ledger = Ledger.decode(blobs[LEDGER]) if LEDGER in blobs else header.get("ledger")
        counts = header.get("counts", {})
        epoch = header.get("epoch")
        if not (
            isinstance(models, dict) and isinstance(offsets, dict) and isinstance(ledger, list)
        ):
            raise CorruptCheckpoint("checkpoint header lacks models, offsets or ledger")
        for name, info in models.items():
            if name not in blobs or not isinstance(info, dict):
                raise CorruptCheckpoint(f"checkpoint lacks the model of {name!r}")
            self.saved[name] = (
                str(info["key"]),
                blobs[name],
                int(info["learned"]),
                int(info["generation"]),
            )
        self.offsets = {int(p): int(o) for p, o in offsets.items()}
        self.ledger = Ledger(
            self.settings.ledger_capacity, (k if isinstance(k, int) else str(k) for k in ledger)
        )
        self.counts = (
            Counter({str(k): int(v) for k, v in dict(counts).items()})
            if isinstance(counts, dict)
            else Counter()
        )
        self.epoch = epoch if isinstance(epoch, str) else None
        self.results = Results.decode(blobs[RESULTS]) if RESULTS in blobs else Results()
        self.performance = (
            Performance.decode(blobs[PERFORMANCE]) if PERFORMANCE in blobs else Performance()
        )
        self.apprentice = (
            ApprenticeBook.decode(blobs[APPRENTICE]) if APPRENTICE in blobs else ApprenticeBook()
        )

    def close(self) -> None:
        self.save_now()
        for model in self.models.values():
            model.policy.close()


def _about(ex: TrainingExample) -> dict[str, str]:
    """The structured log fields of a message about one example (streams.logs)."""
    return {"event_id": ex.event_id, "catalog": ex.catalog}
