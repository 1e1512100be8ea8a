"""Deciding with the feature store: p50/p99 of a decide with 1,000 context features
beside the same request with 20, at the same open-loop rates; and the profile join:
decisions for users with a rich profile against anonymous ones and the store off, open
loop and paired, and the profile read in-process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import numpy as np

from benchmarks.decide_latency import ladder
from benchmarks.features.sizes import NARROW, WAIT_SECONDS, WIDE, Sizes
from benchmarks.features.traffic import as_json, rich_history
from benchmarks.load import request_bytes
from benchmarks.shapes import catalog_body, context, decide_body
from engine import featurespec, profilefold, profileread, profiles
from engine.behaviour import BehaviourObserved
from engine.features import flatten, merge
from engine.limits import Limits
from streams.telemetry import samples


def measure_wide(url: str, size: Sizes) -> dict[str, object]:
    """Both shapes at each rate, interleaved, on the same server."""
    host, port = url.removeprefix("http://").split(":")
    reqs = {
        shape.name: [
            request_bytes(host, int(port), "/v1/decide", decide_body(shape, i)) for i in range(64)
        ]
        for shape in (NARROW, WIDE)
    }
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in reqs}
    for rate in size.rates:
        for name, bodies in reqs.items():
            rows[name] += ladder(name, host, int(port), bodies, [rate], size.load_seconds)
    stated = size.rates[len(size.rates) // 2]
    at = {name: next(r for r in rs if r["rate"] == stated) for name, rs in rows.items()}
    return {
        "rows": rows,
        "stated_rate": stated,
        "p50_ms": {name: r["p50_ms"] for name, r in at.items()},
        "p99_ms": {name: r["p99_ms"] for name, r in at.items()},
        "p99_ratio_wide_over_narrow": float(str(at[WIDE.name]["p99_ms"]))
        / float(str(at[NARROW.name]["p99_ms"])),
    }


def measure_join(url: str, size: Sizes) -> dict[str, object]:
    """Decide for users with rich profiles, anonymously, and with the store off: the same
    actions (products with a popularity) and context. Open loop at a stated rate for
    p50/p99; then one request of each kind after the other, many times over, for the
    paired differences (the join's cost, little moved by a noisy neighbour)."""
    histories = [rich_history(f"rich{k}", k) for k in range(size.rich_users)]
    used = _store_profiles(url, histories)
    bodies = {
        "store_off": _join_bodies("join-off", None),
        "anonymous": _join_bodies("join", None),
        "rich_user": _join_bodies("join", histories),
    }
    host, port = url.removeprefix("http://").split(":")
    latencies: dict[str, list[dict[str, object]]] = {name: [] for name in bodies}
    for _ in range(size.join_rounds):
        for name, raw in bodies.items():
            reqs = [request_bytes(host, int(port), "/v1/decide", b) for b in raw]
            latencies[name] += ladder(
                name, host, int(port), reqs, [size.join_rate], size.load_seconds
            )
    p50 = {k: float(np.median([float(str(r["p50_ms"])) for r in v])) for k, v in latencies.items()}
    p99 = {k: float(np.median([float(str(r["p99_ms"])) for r in v])) for k, v in latencies.items()}
    return {
        "rate": size.join_rate,
        "rounds": latencies,
        "p50_ms": p50,
        "p99_ms": p99,
        "paired": paired(url, bodies, size.join_calls // 6),
        "features_joined": {
            "user_and_session": sum(len(v) for k, v in used["features"].items() if k != "context"),
            "actions_with_popularity": len(used["action_features"]),
        },
        "in_process": join_cpu(histories, size.join_calls),
    }


def _store_profiles(url: str, histories: list[list[BehaviourObserved]]) -> dict[str, Any]:
    """The join catalogs, the users' events posted and in the API's replicas; the
    features a decision for the first user joins."""
    products = {e.product.id for h in histories for e in h if e.product is not None}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for name, spec in (("join", None), ("join-off", [])):
            client.put(f"/v1/catalogs/{name}", json=join_catalog(spec)).raise_for_status()
            for warm in _join_bodies(name, None)[:20]:  # warm-up: model built, caches filled
                client.post("/v1/decide", content=warm).raise_for_status()
        for events in histories:
            body = {"events": [as_json(e) for e in events]}
            client.post("/v1/events", json=body).raise_for_status()
        _poll(
            lambda: all(_stored_events(client, h[0].user_id) >= len(h) for h in histories),
            "every event of the rich users",
        )
        _poll(lambda: _gauge(client, "products") >= len(products), "every product's popularity")
        probe = {**msgspec.json.decode(_join_bodies("join", histories)[0]), "debug": True}
        return dict(client.post("/v1/decide", json=probe).raise_for_status().json())


def _stored_events(client: httpx.Client, user: str) -> int:
    r = client.get(f"/v1/users/{user}/features")
    return int(r.json()["events"]) if r.status_code == 200 else 0


def _gauge(client: httpx.Client, name: str) -> float:
    return samples(client.get("/metrics").text).get(f"loopwise_feature_store_{name}", 0.0)


def _poll(done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not reach the API's replica in {timeout:g} s")
        time.sleep(0.1)


def paired(url: str, bodies: dict[str, list[bytes]], n: int) -> dict[str, float]:
    """Median latencies of one request of each kind after the other (the order rotating),
    and the medians of the differences within each turn."""
    names = list(bodies)
    ms: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for i in range(n):
            for name in names[i % 3 :] + names[: i % 3]:
                started = time.perf_counter()
                client.post("/v1/decide", content=bodies[name][i % 64]).raise_for_status()
                ms[name].append((time.perf_counter() - started) * 1000)
    x = {name: np.array(v) for name, v in ms.items()}
    return {
        "turns": float(n),
        **{f"{name}_p50_ms": float(np.median(v)) for name, v in x.items()},
        "user_join_ms": float(np.median(x["rich_user"] - x["anonymous"])),
        "popularity_join_ms": float(np.median(x["anonymous"] - x["store_off"])),
    }


def join_catalog(spec: list[object] | None) -> dict[str, object]:
    """The narrow catalog, each action showing product p<j>; `spec` None: the default."""
    body = catalog_body(NARROW, wait=WAIT_SECONDS)
    actions: list[dict[str, Any]] = body["actions"]  # type: ignore[assignment]  # as built
    for j, action in enumerate(actions):
        action["metadata"]["product_id"] = f"p{j}"
    if spec is not None:
        body["features"] = spec
    return body


def _join_bodies(catalog: str, histories: list[list[BehaviourObserved]] | None) -> list[bytes]:
    """64 decide bodies; with `histories`, each for one of the users and its sessions."""
    out: list[bytes] = []
    for i in range(64):
        body: dict[str, object] = {"catalog": catalog, "context": context(NARROW, i)}
        if histories is not None:
            event = histories[i % len(histories)][(i * 37) % len(histories[0])]
            body.update(user_id=event.user_id, session_id=event.session_id)
        out.append(msgspec.json.encode(body))
    return out


def join_cpu(histories: list[list[BehaviourObserved]], calls: int) -> dict[str, float]:
    """What the API does per decision to join a stored profile: decode it from the
    replica's bytes, read the declared features, merge them under the request's."""
    limits = Limits()
    user = None
    for event in histories[0]:
        user = profilefold.observe(user, event)
    assert user is not None
    raw = profiles.encode(user)
    session = histories[0][-1].session_id
    request = flatten(context(NARROW, 0), limits)
    now = time.time()
    started = time.perf_counter()
    for _ in range(calls):
        stored = profileread.features(featurespec.DEFAULT_SPEC, profiles.decode(raw), session, now)
        merge(stored, request)
    elapsed = time.perf_counter() - started
    t0 = time.perf_counter()
    for _ in range(calls):
        profiles.decode(raw)
    decode_s = time.perf_counter() - t0
    return {
        "us_per_join": elapsed / calls * 1e6,
        "us_decode": decode_s / calls * 1e6,
        "profile_bytes": float(len(raw)),
        "stored_features": float(sum(len(v) for v in stored.values())),
    }
