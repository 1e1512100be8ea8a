"""Operator routes: health, readiness, Prometheus metrics, model and event status."""

from __future__ import annotations

import json
import time

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from api.serving.state import State, of
from streams.kv import Memory


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    st = of(request)
    checks = {
        "broker": st.outbox.connected and st.epoch is not None,
        "model": st.replica.caught_up,
        "stock": st.stock.caught_up,
        "features": st.profiles.caught_up and st.popularity.caught_up,
        "peers": st.peers.caught_up,  # takes rewards for what other processes decided
    }
    if st.settings.embedded:  # the worker shares this data directory: is it running?
        checks["worker"] = _worker_alive(st)
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def model(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["catalog"])
    m = st.replica.policy(catalog)
    return JSONResponse(
        {
            "catalog": catalog.name,
            "catalog_version": catalog.version,
            "policy": m.policy.name,
            "model_version": st.replica.model_version(catalog.name),
            "generation": m.generation,
            "learned": m.policy.learned,
            "replica": dict(st.replica.counts),
            "freshness_seconds": _quantiles(list(st.replica.freshness.get(catalog.name, ()))),
            "caught_up": st.replica.caught_up,
        }
    )


async def event(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "storefront")
    event_id = request.path_params["event_id"]
    decided = st.decisions.get(event_id)
    return JSONResponse(
        {
            "event_id": event_id,
            "decided": decided is not None,
            "deferred": decided is not None and decided.deferred,
            "learned": event_id in st.replica.ledger,
        }
    )


async def metrics(request: Request) -> Response:
    st = of(request)
    lines: list[str] = []
    gauge(lines, "loopwise_up_seconds", time.time() - st.started)
    gauge(lines, "loopwise_outbox_pending", len(st.outbox))
    gauge(lines, "loopwise_outbox_sent_total", st.outbox.sent)
    gauge(lines, "loopwise_outbox_refused_total", st.outbox.refused)
    gauge(lines, "loopwise_broker_connected", int(st.outbox.connected))
    gauge(lines, "loopwise_ledger_size", len(st.replica.ledger))
    gauge(lines, "loopwise_vw_parsed_examples", st.replica.parsed_examples())
    rocksdb = Memory.shared().usage()
    gauge(lines, "loopwise_rocksdb_cache_bytes", rocksdb["cache"])
    gauge(lines, "loopwise_rocksdb_memtable_bytes", rocksdb["memtables"])
    gauge(lines, "loopwise_stock_skus", len(st.stock.data))
    gauge(lines, "loopwise_feature_store_users", len(st.profiles.data))
    gauge(lines, "loopwise_feature_store_products", len(st.popularity.data))
    gauge(lines, "loopwise_feature_store_bytes", st.profiles.bytes + st.popularity.bytes)
    for name, value in sorted(st.metrics.counts.items()):
        gauge(lines, f"loopwise_{name}_total", value)
    for name, value in sorted(st.replica.counts.items()):
        gauge(lines, f"loopwise_replica_{name}_total", value)
    for name, value in sorted(st.peers.counts.items()):  # the other processes' decisions
        gauge(lines, f"loopwise_peers_{name}_total", value)
    gauge(lines, "loopwise_peers_live", int(st.peers.live))
    for (catalog, cause), n in sorted(st.failovers.counts.items()):
        lines.append(f'loopwise_failovers_total{{catalog="{catalog}",cause="{cause}"}} {n}')
    for model, breaker in sorted(st.failovers.breakers.items()):
        catalog, _, arm = model.partition("~")  # an arm's own model: <catalog>~<arm>
        labels = f'catalog="{catalog}"' + (f',arm="{arm}"' if arm else "")
        lines.append(f"loopwise_breaker_open{{{labels}}} {int(breaker.is_open)}")
        lines.append(f"loopwise_breaker_trips_total{{{labels}}} {breaker.trips}")
    for q, v in _quantiles(list(st.metrics.decide_seconds)).items():
        lines.append(f'loopwise_decide_seconds{{quantile="{q}"}} {v:.6f}')
    for q, v in _quantiles(list(st.replica.latencies)).items():
        lines.append(f'loopwise_reward_to_model_seconds{{quantile="{q}"}} {v:.6f}')
    for name, value in sorted(_worker_counts(st).items()):
        gauge(lines, f"loopwise_join_{name}_total", value)
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def gauge(lines: list[str], name: str, value: float) -> None:
    lines.append(f"{name} {value}")


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    qs = np.quantile(np.asarray(values), [0.5, 0.9, 0.99])
    return {"0.5": float(qs[0]), "0.9": float(qs[1]), "0.99": float(qs[2])}


def _worker_alive(st: State, within: float = 10.0) -> bool:
    try:
        stats = json.loads((st.settings.data_dir / "worker-stats.json").read_text())
    except (OSError, ValueError):
        return False
    fresh = stats.get("ts", 0) >= max(st.started, time.time() - within)
    return bool(fresh and stats.get("assigned", 0) > 0)  # consuming, not still joining


def _worker_counts(st: State) -> dict[str, int]:
    path = st.settings.data_dir / "worker-stats.json"
    try:
        counts = json.loads(path.read_text()).get("counts", {})
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in counts.items()}
