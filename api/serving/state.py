"""The resources a serving process holds for its lifetime, opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request

from api import bodies
from api.serving import decided, memory, pseudonyms
from api.serving.admission import Gate, Limiter, parse_limits
from api.serving.catalogs import CatalogStore
from api.serving.exposures import Exposures
from api.serving.failovers import Failovers
from api.serving.jobs import Jobs
from api.serving.metrics import Metrics, collect
from api.serving.mirror import Mirror
from api.serving.optimizations import apply_optimizations, schedule_optimizations
from api.serving.outbox import Outbox
from api.serving.peers import Peers
from api.serving.recent import Recent
from api.serving.replays import Replays
from api.serving.replica import ModelReplica
from engine.errors import Forbidden, InvalidInput, Unauthorized
from engine.records import decode_stock
from streams.broker import popularity_changelog, prepare, profiles_changelog, stock_changelog
from streams.files import write_atomic
from streams.kv import KV
from streams.settings import Settings, loopback

log = logging.getLogger(__name__)
ROLES = ("storefront", "marketer", "admin")


@dataclass
class State:
    settings: Settings
    catalogs: CatalogStore
    outbox: Outbox
    replica: ModelReplica
    decisions: decided.DecisionIndex
    keys: dict[str, str]  # sha256(key) -> role
    limiter: Limiter  # per-key rate limits (api.serving.admission)
    stock: Mirror
    profiles: Mirror  # the feature store: user id -> encoded engine.profiles.Profile
    popularity: Mirror  # product id -> encoded engine.profiles.Profile of the product
    exposures: Exposures
    replays: Replays
    pseudonyms: pseudonyms.Pseudonyms
    origin: str  # this serving process's id in the decisions log, kept across restarts
    peers: Peers  # applies what other serving processes decided to the stores above
    jobs: Jobs  # the evaluations this process started
    metrics: Metrics = field(default_factory=Metrics)
    recent: Recent = field(default_factory=Recent)  # recent decisions: why not shown
    gate: Gate = field(default_factory=lambda: Gate(1))  # the app's (create_app sets it)
    failovers: Failovers = field(default_factory=Failovers)  # per catalog: breaker, safe policy
    epoch: str | None = None
    started: float = field(default_factory=time.time)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def authorize(self, request: Request, role: str) -> None:
        """Raise unless the request carries a key of `role` (admin may do everything)."""
        if not self.keys:
            return
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else ""
        key = key or request.headers.get("ocp-apim-subscription-key", "")
        digest = hashlib.sha256(key.encode()).hexdigest()
        granted = None
        for stored, stored_role in self.keys.items():
            if hmac.compare_digest(stored, digest):
                granted = stored_role
        if granted is None:
            raise Unauthorized(
                "a valid API key is required (Authorization: Bearer <key>)", field="Authorization"
            )
        if granted != "admin" and granted != role:
            raise Forbidden(
                f"this key has role {granted!r}; this route needs {role!r}", field="Authorization"
            )
        self.limiter.take(digest, granted, time.monotonic())


def parse_keys(spec: str) -> dict[str, str]:
    """'role:key,role:key' -> {sha256(key): role}; two keys per role allow rotation."""
    keys: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        role, _, key = item.partition(":")
        if role not in ROLES or len(key) < 16:
            raise InvalidInput(
                f"LOOPWISE_API_KEYS entry for role {role!r} must be role:key with a role of "
                f"{', '.join(ROLES)} and a key of at least 16 characters",
                field="LOOPWISE_API_KEYS",
            )
        keys[hashlib.sha256(key.encode()).hexdigest()] = role
    return keys


def open_state(settings: Settings) -> State:
    if not settings.api_keys and not loopback(settings.host):  # LOOPWISE_OPEN_ACCESS said so
        log.warning(
            "serving %s without API keys (LOOPWISE_OPEN_ACCESS): every route, erasure and "
            "catalog edits included, is open to whoever reaches this port",
            settings.host,
        )
    root = settings.data_dir / "api"
    catalogs = CatalogStore(KV(root / "catalogs"), settings.limits)
    for path in settings.catalogs:
        load_catalog_file(catalogs, path)
    index = decided.DecisionIndex(KV(root / "decisions", ttl_seconds=decided.TTL_SECONDS))
    replays = Replays(KV(root / "replays", ttl_seconds=decided.TTL_SECONDS))
    exposures = Exposures(KV(root / "exposures"))
    origin = _origin(root / "origin")
    metrics = Metrics()
    state = State(
        settings=settings,
        catalogs=catalogs,
        outbox=Outbox(KV(root / "outbox"), settings.outbox_capacity),
        replica=ModelReplica(settings, catalogs, metrics.model_lag_seconds),
        decisions=index,
        keys=parse_keys(settings.api_keys),
        limiter=Limiter(parse_limits(settings.rate_limits, ROLES)),
        stock=Mirror(stock_changelog(settings), settings.partitions, decode_stock),
        profiles=Mirror(profiles_changelog(settings), settings.partitions),  # decoded on read
        popularity=Mirror(popularity_changelog(settings), settings.partitions),
        exposures=exposures,
        replays=replays,
        pseudonyms=pseudonyms.load(settings.pseudonym_key, root / "pseudonym.key"),
        origin=origin,
        peers=Peers(
            settings.topic("decisions"), settings.partitions, origin, index, replays, exposures
        ),
        jobs=Jobs(root / "evaluations"),
        metrics=metrics,
    )
    metrics.registry.scraped(lambda out: collect(state, out))
    return state


def _origin(path: Path) -> str:
    if not path.exists():
        write_atomic(path, uuid.uuid4().hex.encode())
    return path.read_text().strip()


async def purge_replays(state: State, every: float = 5.0) -> None:
    """Drop kept answers as their reward windows close."""
    while True:
        await asyncio.sleep(every)
        state.replays.purge(time.time())


def load_catalog_file(catalogs: CatalogStore, path: Path) -> None:
    """A JSON or YAML file whose name (without suffix) is the catalog name, read with the
    bounds and the JSON-only types of a request body (api.bodies)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"catalog file {path} cannot be read: {exc}", field=str(path)) from exc
    kind = "application/json" if path.suffix == ".json" else "application/yaml"
    try:
        body = bodies.parse(raw, kind, catalogs.limits)
    except InvalidInput as exc:
        raise InvalidInput(f"catalog file {path}: {exc}", field=str(path)) from exc
    name = body.get("name", path.stem)
    catalog, _ = catalogs.put(str(name), body, time.time())
    log.info("catalog %s version %d loaded from %s", catalog.name, catalog.version, path)


async def connect(state: State) -> None:
    """Background: wait for the broker, then follow the training log and the tables."""
    state.epoch = (await prepare(state.settings, attempts=10**9)).epoch
    bootstrap = state.settings.bootstrap
    state.tasks.append(asyncio.create_task(state.replica.follow_log(bootstrap, state.epoch)))
    for mirror in (state.stock, state.profiles, state.popularity, state.peers):
        state.tasks.append(asyncio.create_task(mirror.run(bootstrap, state.settings.fetch_wait_ms)))


@contextlib.asynccontextmanager
async def lifespan_for(
    settings: Settings, gate: Gate, app: Starlette
) -> AsyncIterator[dict[str, State]]:
    state = open_state(settings)
    state.gate = gate
    state.tasks.append(asyncio.create_task(state.outbox.run(settings.bootstrap)))
    state.tasks.append(asyncio.create_task(connect(state)))
    state.tasks.append(asyncio.create_task(purge_replays(state)))
    state.tasks.append(asyncio.create_task(apply_optimizations(state)))
    state.tasks.append(asyncio.create_task(schedule_optimizations(state)))
    if settings.tracemalloc_seconds > 0:  # a soak's diagnosis: where Python memory grows
        out = settings.data_dir / "logs" / "tracemalloc-api.txt"
        state.tasks.append(asyncio.create_task(memory.trace(settings.tracemalloc_seconds, out)))
    try:
        yield {"lw": state}
    finally:
        await drain(state, timeout=3.0)
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        state.replica.close()
        state.jobs.close()
        kvs = (state.catalogs.kv, state.outbox.kv, state.decisions.kv, state.exposures.kv)
        for kv in (*kvs, state.replays.kv):
            kv.close()


async def drain(state: State, timeout: float) -> None:
    """Give the outbox a moment to send what is pending (what is left stays on disk)."""
    deadline = time.monotonic() + timeout
    while len(state.outbox) and state.outbox.connected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def of(request: Request) -> State:
    state: State = request.state.lw
    return state
