"""Settings: one frozen value, read once from LOOPWISE_* environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from engine.errors import InvalidInput
from engine.join import JoinConfig
from engine.limits import Limits

PREFIX = "LOOPWISE_"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("data")
    broker: str = ""  # empty: start the embedded broker; else "host:port[,host:port]"
    broker_port: int = 19092
    host: str = "127.0.0.1"
    port: int = 8000
    worker_metrics_port: int = 0  # the worker's /metrics; 0: a free port (in worker-stats.json)
    partitions: int = 4
    topic_prefix: str = "loopwise"
    catalogs: tuple[Path, ...] = ()
    checkpoint_seconds: float = 2.0
    tick_seconds: float = 0.1
    fetch_wait_ms: int = 50  # a broker that holds fetches (Tansu) answers no later
    broker_nice: int = 10  # the embedded broker runs this much nicer than the API (0-19)
    broker_storage: str = "bounded"  # the embedded broker's log: bounded (retention), memory
    broker_retention_seconds: float = 600.0  # embedded: a stream topic keeps 10 minutes
    broker_retention_mb: float = 64.0  # embedded: at most this much per partition of a topic
    consistency_check: str = "on"  # Faust's table recovery check: on, off
    orphan_seconds: float = 3600.0
    retention_seconds: float = 60.0
    outbox_capacity: int = 1_000_000
    ledger_capacity: int = 200_000
    pseudonym_key: str = ""  # the HMAC key of user ids in logs; empty: one per data directory
    api_keys: str = ""  # "role:key,role:key"; empty: no authentication (loopback only)
    open_access: bool = False  # serve without keys on a non-loopback host, on purpose
    rate_limits: str = ""  # "role:rate[:burst],..." per API key (api.serving.admission)
    max_inflight: int = 64  # requests in the handlers at once; one more is shed with a 503
    personalizer_loop: str = "personalizer"  # the catalog of Personalizer URLs naming no loop
    tracemalloc_seconds: float = 0.0  # > 0: trace Python allocations (soaks; api.serving.memory)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for name in (
            "broker_port",
            "port",
            "partitions",
            "outbox_capacity",
            "ledger_capacity",
            "fetch_wait_ms",
            "max_inflight",
        ):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be > 0, got {getattr(self, name)}", field=name)
        if not self.api_keys and not self.open_access and not loopback(self.host):
            raise InvalidInput(
                f"the API would listen on {self.host} without API keys: set LOOPWISE_API_KEYS "
                "(role:key,...), or LOOPWISE_OPEN_ACCESS=1 to serve every route without "
                "authentication on purpose",
                field="LOOPWISE_API_KEYS",
            )
        if not 0 <= self.worker_metrics_port <= 65535:
            raise InvalidInput(
                f"LOOPWISE_WORKER_METRICS_PORT must be 0-65535 (0: a free port), got "
                f"{self.worker_metrics_port}",
                field="LOOPWISE_WORKER_METRICS_PORT",
            )
        if not 0 <= self.broker_nice <= 19:
            raise InvalidInput(
                f"LOOPWISE_BROKER_NICE must be 0-19 (how much nicer than the API the embedded "
                f"broker runs), got {self.broker_nice}",
                field="LOOPWISE_BROKER_NICE",
            )
        if self.broker_storage not in ("bounded", "memory"):
            raise InvalidInput(
                f"LOOPWISE_BROKER_STORAGE must be bounded or memory, got {self.broker_storage!r}",
                field="LOOPWISE_BROKER_STORAGE",
            )
        for name in ("broker_retention_seconds", "broker_retention_mb"):
            if getattr(self, name) <= 0:
                raise InvalidInput(
                    f"LOOPWISE_{name.upper()} must be > 0, got {getattr(self, name)}",
                    field=f"LOOPWISE_{name.upper()}",
                )
        if self.consistency_check not in ("on", "off"):
            raise InvalidInput(
                f"consistency_check must be on or off, got {self.consistency_check!r}",
                field="LOOPWISE_CONSISTENCY_CHECK",
            )
        for name in ("checkpoint_seconds", "tick_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be > 0, got {getattr(self, name)}", field=name)

    @property
    def bootstrap(self) -> str:
        return self.broker or f"127.0.0.1:{self.broker_port}"

    @property
    def embedded(self) -> bool:
        return not self.broker

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}-{name}"

    @property
    def join(self) -> JoinConfig:
        return JoinConfig(
            orphan_seconds=self.orphan_seconds, retention_seconds=self.retention_seconds
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]  # keys checked by replace


def loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read LOOPWISE_<FIELD> (and LOOPWISE_LIMIT_<FIELD> for limits); errors name the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name == "limits":
            continue
        raw = env.get(PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _cast(f.name, raw, Settings.__dataclass_fields__[f.name].default)
    limits: dict[str, object] = {}
    for f in fields(Limits):
        raw = env.get(f"{PREFIX}LIMIT_{f.name.upper()}")
        if raw is not None:
            limits[f.name] = _cast(f"LIMIT_{f.name}", raw, getattr(Limits(), f.name))
    return Settings(**values, limits=Limits(**limits))  # type: ignore[arg-type]


def _cast(name: str, raw: str, default: object) -> object:
    variable = PREFIX + name.upper()
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, tuple):
            return tuple(Path(p) for p in raw.split(",") if p)
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"Config '{variable}' is {raw!r}, expected a {type(default).__name__}", field=variable
        ) from exc
    return raw
