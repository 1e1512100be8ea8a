"""Versioned catalog storage in a local RocksDB store.

Every accepted body is kept under its version, so a training example can be learned
with the actions of the catalog version its decision used, after later edits or a delete.
With the body goes the catalog's defaults epoch (engine.learning.DEFAULTS): set when the
catalog is created and inherited by its later versions, so what a catalog learns with
never changes under it when Loopwise's defaults do. Versions stored before the epoch
existed read as the legacy epoch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from engine.catalog import Catalog, check_name, parse_catalog
from engine.errors import Conflict, LimitExceeded, NotFound, UnknownCatalog
from engine.learning import DEFAULTS, LEGACY_DEFAULTS
from engine.limits import UNBOUNDED, Limits
from streams.kv import KV

log = logging.getLogger(__name__)


class CatalogStore:
    def __init__(self, kv: KV, limits: Limits) -> None:
        self.kv = kv
        self.limits = limits
        self._latest: dict[str, Catalog] = {}
        # writes go one at a time: a version number is read and the next one written
        self.writes = threading.Lock()
        self.version = lru_cache(maxsize=256)(self._load_version)
        for key, raw in kv.scan(b"l:"):
            name = key[2:].decode()
            catalog = self.version(name, int(raw))
            if catalog is not None:
                self._latest[name] = catalog

    def put(
        self, name: str, body: object, now: float, expected_version: int | None = None
    ) -> tuple[Catalog, bool]:
        """Validate and store a new version; (catalog, created). Unchanged bodies keep theirs."""
        check_name(name)
        current = self._latest.get(name)
        if expected_version is not None and (current.version if current else 0) != expected_version:
            raise Conflict(
                f"catalog {name!r} is at version {current.version if current else 0}, "
                f"not {expected_version}",
                field="If-Match",
            )
        version = current.version + 1 if current else self._last_version(name) + 1
        previous = self._record(name, current.version) if current else None
        defaults = _defaults(previous) if previous else DEFAULTS
        catalog = parse_catalog(
            name, body, self.limits, version=version, now=now, defaults=defaults
        )
        if current is not None and previous and _canonical(previous["body"]) == _canonical(body):
            return current, False
        record = json.dumps({"body": body, "updated_at": now, "defaults": defaults}).encode()
        self.kv.write({_vkey(name, version): record, b"l:" + name.encode(): b"%d" % version})
        self._latest[name] = catalog
        return catalog, current is None

    def latest(self, name: str) -> Catalog:
        catalog = self._latest.get(name)
        if catalog is None:
            raise UnknownCatalog(f"no catalog is named {name!r}", field="catalog")
        return catalog

    def edit(
        self,
        name: str,
        change: Callable[[dict[str, Any]], None],
        now: float,
        expected_version: int | None = None,
    ) -> Catalog:
        """Store a new version: the latest body with `change` applied to it in place."""
        with self.writes:
            body = self.body(name)
            change(body)
            catalog, _ = self.put(name, body, now, expected_version)
        return catalog

    def body(self, name: str) -> dict[str, Any]:
        """The body the latest version was stored from (what a change starts from)."""
        record = self._record(name, self.latest(name).version)
        return dict(record["body"]) if record and isinstance(record["body"], dict) else {}

    def history(self, name: str, before: int | None, limit: int) -> list[StoredVersion]:
        """Up to `limit` stored versions of a catalog, newest first, below `before` (or from
        the latest). Versions are numbered 1, 2, ... without gaps, and a catalog deleted and
        created again goes on numbering: its earlier versions are part of its history."""
        top = self.latest(name).version
        start = top if before is None else min(before - 1, top)
        out: list[StoredVersion] = []
        for version in range(start, 0, -1):
            if len(out) == limit:
                break
            record = self._record(name, version)
            if record is not None:
                out.append(StoredVersion.of(version, record))
        return out

    def stored(self, name: str, version: int) -> StoredVersion:
        """The body a version was stored from, as it was accepted."""
        latest = self.latest(name).version
        record = self._record(name, version) if 0 < version <= latest else None
        if record is None:
            raise NotFound(
                f"catalog {name!r} has no version {version} (its latest is {latest})",
                field="version",
            )
        return StoredVersion.of(version, record)

    def delete(self, name: str) -> None:
        self.latest(name)
        self.kv.delete(b"l:" + name.encode())
        del self._latest[name]

    def names(self) -> list[str]:
        return sorted(self._latest)

    def _load_version(self, name: str, version: int) -> Catalog | None:
        record = self._record(name, version)
        if record is None:
            return None
        now, defaults = float(record["updated_at"]), _defaults(record)
        try:
            return parse_catalog(
                name, record["body"], self.limits, version=version, now=now, defaults=defaults
            )
        except LimitExceeded as exc:  # accepted under wider limits: it stays readable
            log.warning(
                "catalog %s version %d exceeds today's limits (%s); served as stored, and "
                "its next version must meet them",
                name,
                version,
                exc,
            )
            return parse_catalog(
                name, record["body"], UNBOUNDED, version=version, now=now, defaults=defaults
            )

    def _record(self, name: str, version: int) -> dict[str, Any] | None:
        raw = self.kv.get(_vkey(name, version))
        return cast(dict[str, Any], json.loads(raw)) if raw else None

    def _last_version(self, name: str) -> int:
        last = 0
        for key, _ in self.kv.scan(b"v:" + name.encode() + b":"):
            last = max(last, int(key.rsplit(b":", 1)[1]))
        return last


@dataclass(frozen=True)
class StoredVersion:
    version: int
    updated_at: float
    body: Any  # the decoded body as accepted (a mapping for every stored catalog)

    @classmethod
    def of(cls, version: int, record: dict[str, Any]) -> StoredVersion:
        return cls(version, float(record["updated_at"]), record["body"])

    @property
    def actions(self) -> int:
        body = self.body if isinstance(self.body, dict) else {}
        actions = body.get("actions")
        return len(actions) if isinstance(actions, list) else 0


def _defaults(record: dict[str, Any]) -> int:
    return int(record.get("defaults", LEGACY_DEFAULTS))


def _vkey(name: str, version: int) -> bytes:
    return b"v:%s:%010d" % (name.encode(), version)


def _canonical(body: object) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
