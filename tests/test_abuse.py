"""Abusive bodies against a real API process over HTTP (issue 22, defects 2 and 5).

Each body gets a clear 4xx problem+json naming the field in under 2 s, while a probe
thread keeps asking /healthz: the event loop must never stall, so the probe's slowest
answer over the whole run stays within 0.5 s. A 10,000-action catalog is decoded,
validated and stored in a worker thread, with the same bound on the probe.

The API runs without a broker (decisions and events wait in the outbox): nothing here
needs one, and it keeps the test light on the shared 2-core machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from loopwise.supervisor import Child
from streams.broker import free_port
from tests.conftest import loopwise_env, wait_until

ANSWER_SECONDS = 2.0
PROBE_SECONDS = 0.5  # the bound on /healthz; widen PROBE_INTERVAL, never this
PROBE_INTERVAL = 0.05
JSON = "application/json"
YAML = "application/yaml"

BOMB = b"""actions:
- id: a
  metadata:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""
DEEP = b"[" * 10_000 + b"]" * 10_000
HUGE = b"9" * 5_000


@dataclass
class Probe:
    """GET /healthz (or POST `decide` to /v1/decide) every `interval` seconds from a
    thread; the answers' latencies."""

    url: str
    decide: dict[str, object] | None = None
    interval: float = PROBE_INTERVAL
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    if self.decide is None:
                        status = http.get("/healthz").status_code
                    else:
                        status = http.post("/v1/decide", json=self.decide).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if status != 200:
                        self.failures.append(f"answered {status}")
                self.latencies.append(time.perf_counter() - start)
                self._stop.wait(self.interval)

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=float("inf"))


def start_api(data: Path, **limits: str) -> tuple[Child, str]:
    port = free_port()
    env = loopwise_env(data, port, f"127.0.0.1:{free_port()}", **limits)  # no broker there
    api = Child("api", env, data / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 60, "the API")
    except AssertionError:
        api.stop()
        raise AssertionError(api.tail()) from None
    return api, url


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    child, url = start_api(tmp_path_factory.mktemp("abuse"))
    try:
        yield url
    finally:
        child.stop()


@pytest.fixture(scope="module")
def probe(api: str) -> Iterator[Probe]:
    """One probe across the whole abuse run."""
    with Probe(api) as p:
        yield p


def catalog_yaml(metadata: str) -> bytes:
    return f"actions:\n- id: a\n  metadata:\n{metadata}".encode()


def nested_yaml(levels: int) -> bytes:
    lines = [f"{'  ' * i}k{i}:" for i in range(levels)]
    return ("\n".join(lines) + " 1\n").encode()


def dumps(body: object) -> bytes:
    return json.dumps(body).encode()


# (name, method, path, content type, body, status, field)
CASES = [
    ("alias bomb", "PUT", "/v1/catalogs/bomb", YAML, BOMB, 422, "actions[0].metadata.b[0]"),
    ("one alias", "PUT", "/v1/catalogs/c", YAML, b"a: &x 1\nb: *x\n", 422, "b"),
    ("deep json decide", "POST", "/v1/decide", JSON, DEEP, 422, "body"),
    ("deep json rewards", "POST", "/v1/rewards", JSON, DEEP, 422, "body"),
    ("deep json events", "POST", "/v1/events", JSON, DEEP, 422, "body"),
    ("deep json catalog", "PUT", "/v1/catalogs/c", JSON, DEEP, 422, "body"),
    (
        "deep json context",
        "POST",
        "/v1/decide",
        JSON,
        b'{"catalog": "c", "context": ' + b"[" * 40 + b"]" * 40 + b"}",
        422,
        "context" + "[0]" * 31,
    ),
    ("deep yaml flow", "PUT", "/v1/catalogs/c", YAML, DEEP, 400, "body"),
    (
        "deep yaml block",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        nested_yaml(40),
        422,
        ".".join(f"k{i}" for i in range(32)),
    ),
    (
        "many values json",
        "POST",
        "/v1/events",
        JSON,
        dumps({"events": [0] * 300_000}),
        422,
        "body",
    ),
    (
        "many values yaml",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        b"actions: [" + b"0," * 200_000 + b"0]\n",
        422,
        "body",
    ),
    ("1e400", "POST", "/v1/rewards", JSON, b'{"event_id": "e", "value": 1e400}', 400, "body"),
    (
        "5000 digits json",
        "POST",
        "/v1/rewards",
        JSON,
        b'{"event_id": "e", "value": ' + HUGE + b"}",
        400,
        "body",
    ),
    (
        "5000 digits yaml",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        catalog_yaml("    n: " + HUGE.decode() + "\n"),
        422,
        "actions[0].metadata.n",
    ),
    (
        "1e300 in features",
        "PUT",
        "/v1/catalogs/c",
        JSON,
        dumps({"actions": [{"id": "a", "features": {"x": {"v": 1e300}}}]}),
        422,
        "actions[0].features.x.v",
    ),
    ("NaN", "POST", "/v1/rewards", JSON, b'{"event_id": "e", "value": NaN}', 400, "body"),
    (
        "Infinity",
        "POST",
        "/v1/events",
        JSON,
        b'{"type": "inventory", "sku": "s", "level": Infinity}',
        400,
        "body",
    ),
    (
        ".nan yaml",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        b"actions: [{id: a}]\nlearning: {default_reward: .nan}\n",
        422,
        "learning.default_reward",
    ),
    (
        "duplicate json",
        "POST",
        "/v1/decide",
        JSON,
        b'{"catalog": "c", "catalog": "other"}',
        422,
        "catalog",
    ),
    (
        "duplicate json nested",
        "POST",
        "/v1/rewards",
        JSON,
        b'{"rewards": [{"event_id": "e", "value": 1, "value": 0}]}',
        422,
        "rewards[0].value",
    ),
    (
        "duplicate yaml",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        b"actions:\n- id: a\n  id: b\n",
        422,
        "actions[0].id",
    ),
    ("bad utf-8 json", "POST", "/v1/decide", JSON, b'{"catalog": "\xff\xfe"}', 400, "body"),
    ("bad utf-8 yaml", "PUT", "/v1/catalogs/c", YAML, b"actions: [{id: \xc3\x28}]\n", 400, "body"),
    ("lone surrogate", "POST", "/v1/decide", JSON, b'{"catalog": "\\udc00"}', 400, "body"),
    (
        "oversized event id",
        "POST",
        "/v1/decide",
        JSON,
        dumps({"catalog": "c", "event_id": "e" * 10_000}),
        422,
        "event_id",
    ),
    (
        "oversized reward event id",
        "POST",
        "/v1/rewards",
        JSON,
        dumps({"event_id": "e" * 129, "value": 1}),
        422,
        "event_id",
    ),
    (
        "oversized action id",
        "PUT",
        "/v1/catalogs/c",
        JSON,
        dumps({"actions": [{"id": "a" * 1_000}]}),
        422,
        "actions[0].id",
    ),
    (
        "oversized catalog name",
        "PUT",
        "/v1/catalogs/" + "n" * 1_000,
        JSON,
        dumps({"actions": [{"id": "a"}]}),
        422,
        "name",
    ),
    (
        "oversized user id",
        "POST",
        "/v1/events",
        JSON,
        dumps({"type": "page_view", "user_id": "u" * 100_000}),
        422,
        "user_id",
    ),
    (
        "oversized metadata",
        "PUT",
        "/v1/catalogs/c",
        JSON,
        dumps({"actions": [{"id": "a", "metadata": {"text": "x" * 10_000}}]}),
        422,
        "actions[0].metadata",
    ),
    ("oversized body", "POST", "/v1/events", JSON, b"[" * 2_000_000, 413, "body"),
    ("wrong type decide", "POST", "/v1/decide", JSON, b'{"catalog": 3}', 422, "catalog"),
    (
        "wrong type rewards",
        "POST",
        "/v1/rewards",
        JSON,
        b'{"event_id": "e", "value": "1"}',
        422,
        "value",
    ),
    (
        "wrong type events",
        "POST",
        "/v1/events",
        JSON,
        b'{"type": "inventory", "sku": "s", "level": "3"}',
        422,
        "level",
    ),
    ("wrong type catalog", "PUT", "/v1/catalogs/c", JSON, b'{"actions": "a"}', 422, "actions"),
    (
        "wrong type catalog yaml",
        "PUT",
        "/v1/catalogs/c",
        YAML,
        b"actions: [{id: a, features: red}]\n",
        422,
        "actions[0].features",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "status", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_abuse_gets_a_clear_4xx_quickly(
    api: str,
    probe: Probe,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    status: int,
    field: str,
) -> None:
    start = time.perf_counter()
    r = httpx.request(
        method, api + path, content=body, headers={"content-type": content_type}, timeout=30.0
    )
    took = time.perf_counter() - start
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["field"] == field and problem["status"] == status and problem["detail"]
    assert took < ANSWER_SECONDS, f"answered in {took:.2f} s"
    assert httpx.get(f"{api}/healthz").status_code == 200, "the API is still up"


def test_the_bomb_is_answered_at_once_and_nothing_is_stored(api: str, probe: Probe) -> None:
    start = time.perf_counter()
    r = httpx.put(f"{api}/v1/catalogs/bomb", content=BOMB, headers={"content-type": YAML})
    took = time.perf_counter() - start
    print(f"\nalias bomb ({len(BOMB)} bytes): {r.status_code} in {took * 1000:.1f} ms")
    assert r.status_code == 422 and took < ANSWER_SECONDS
    assert httpx.get(f"{api}/v1/catalogs/bomb").status_code == 404


def test_concurrent_puts_of_a_catalog_get_one_version_each(api: str, probe: Probe) -> None:
    """PUTs run in worker threads: a version is still read and the next written at once
    (seen to fail without api.catalogs' lock: versions 1, 1, 1, 2, 2, 2, ...)."""
    actions = [{"id": f"a{j}", "features": {"x": {"j": j}}} for j in range(999)]
    bodies = [dumps({"actions": [*actions, {"id": f"b{i}"}]}) for i in range(8)]  # slow enough
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda body: httpx.put(
                    f"{api}/v1/catalogs/race", content=body, headers={"content-type": JSON}
                ),
                bodies,
            )
        )
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers]
    assert sorted(r.json()["version"] for r in answers) == list(range(1, 9))
    assert httpx.get(f"{api}/v1/catalogs/race").json()["version"] == 8


def test_health_kept_answering_through_the_abuse(probe: Probe) -> None:
    """Last in this file: the probe has watched every case above."""
    wait_until(lambda: len(probe.latencies) >= 10, 5, "ten probes")  # when run alone
    print(
        f"\nhealthz probe over the abuse run: {len(probe.latencies)} probes, "
        f"slowest {probe.slowest * 1000:.1f} ms"
    )
    assert not probe.failures, probe.failures[:5]
    assert probe.slowest <= PROBE_SECONDS


def big_catalog(n: int) -> bytes:
    """`n` actions of 20 features each, as in the decide benchmark, and a little metadata."""
    actions = [
        {
            "id": f"item-{i}",
            "features": {
                "item": {
                    "colour": f"c{i % 12}",
                    "brand": f"b{i % 40}",
                    "category": f"k{i % 25}",
                    "price": round(1 + i * 0.01, 2),
                    "tags": ["new", f"t{i % 7}"],
                    **{f"f{j}": round((i * 31 + j * 17) % 1000 / 100, 2) for j in range(14)},
                }
            },
            "metadata": {"group": f"g{i % 50}", "title": f"Item number {i}", "sku": f"sku-{i}"},
        }
        for i in range(n)
    ]
    return dumps({"actions": actions, "learning": {"exploration": {"algorithm": "epsilon"}}})


def test_a_10000_action_catalog_does_not_stall_the_api(tmp_path: Path) -> None:
    """Seen to fail with the PUT on the event loop: /healthz waited 872 ms."""
    body = big_catalog(10_000)  # built before the probes start: it holds this process's GIL
    child, url = start_api(
        tmp_path,
        LOOPWISE_LIMIT_MAX_ACTIONS="10000",
        LOOPWISE_LIMIT_MAX_BODY_BYTES=str(8 * 1024 * 1024),
        LOOPWISE_LIMIT_MAX_BODY_NODES="500000",
    )
    decide = {"catalog": "small", "context": {"user": {"segment": "a"}}}
    try:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            small = {"actions": [{"id": f"a{i}", "features": {"x": {"i": i}}} for i in range(5)]}
            assert http.put("/v1/catalogs/small", json=small).status_code == 201
            assert http.post("/v1/decide", json=decide).status_code == 200  # warm
            with Probe(url) as health, Probe(url, decide) as decisions:
                time.sleep(0.5)  # a few probes before
                start = time.perf_counter()
                r = http.put("/v1/catalogs/big", content=body, headers={"content-type": JSON})
                put_seconds = time.perf_counter() - start
                start = time.perf_counter()
                got = http.get("/v1/catalogs/big")
                get_seconds = time.perf_counter() - start
                time.sleep(0.2)
        print(
            f"\n10,000-action catalog ({len(body) / 1e6:.1f} MB): PUT {r.status_code} in "
            f"{put_seconds:.2f} s, GET {got.status_code} in {get_seconds:.2f} s; slowest of "
            f"{len(health.latencies)} healthz probes {health.slowest * 1000:.1f} ms, of "
            f"{len(decisions.latencies)} decisions {decisions.slowest * 1000:.1f} ms"
        )
        assert r.status_code == 201, r.text[:500]
        assert got.status_code == 200 and len(got.json()["actions"]) == 10_000
        for probe in (health, decisions):
            assert not probe.failures, probe.failures[:5]
            assert len(probe.latencies) >= 5
            assert probe.slowest <= PROBE_SECONDS
    finally:
        child.stop()
