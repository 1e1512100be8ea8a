"""api.serving.admission: per-key rate limits (429 with Retry-After) and load shedding
(503 at once beyond the in-flight limit, health never shed, recovery at once)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from api.app import create_app
from api.serving.admission import Gate, Limit, Limiter, Shedder, parse_limits
from api.serving.state import ROLES
from engine.errors import InvalidInput, RateLimited
from streams.broker import free_port
from streams.settings import Settings
from streams.telemetry import samples
from tests.routes import problem

SF1, SF2 = "sf-key-0123456789abcdef", "sf-other-0123456789abcdef"
AD = "ad-key-0123456789abcdef"


def test_limits_parse_with_a_default_burst_of_twice_the_rate() -> None:
    assert parse_limits("storefront:100, marketer:2:5", ROLES) == {
        "storefront": Limit(100.0, 200.0),
        "marketer": Limit(2.0, 5.0),
    }
    assert parse_limits("", ROLES) == {}


@pytest.mark.parametrize(
    "spec", ["root:10", "storefront", "storefront:0", "storefront:x", "marketer:1:0.5", "a:1:2:3"]
)
def test_bad_limits_are_refused_naming_the_setting(spec: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_limits(spec, ROLES)
    assert err.value.field == "LOOPWISE_RATE_LIMITS"


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50.0),
    burst=st.floats(1.0, 20.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200),
)
def test_a_bucket_admits_no_more_than_its_burst_plus_rate_times_the_span(
    rate: float, burst: float, gaps: list[float]
) -> None:
    limiter = Limiter({"storefront": Limit(rate, burst)})
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        try:
            limiter.take("k", "storefront", now)
            admitted.append(now)
        except RateLimited as refused:
            assert refused.retry_after > 0
            again = Limiter({"storefront": Limit(rate, burst)}, dict(limiter.buckets))
            again.take("k", "storefront", now + refused.retry_after + 1e-9)  # then it may go
    for i, start in enumerate(admitted):  # every window of the admitted, from each start
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - start) + 1e-6


def test_roles_without_a_limit_and_other_keys_are_not_limited() -> None:
    limiter = Limiter({"storefront": Limit(1.0, 1.0)})
    limiter.take("a", "storefront", 0.0)
    with pytest.raises(RateLimited):
        limiter.take("a", "storefront", 0.1)
    limiter.take("b", "storefront", 0.1)  # another key: its own bucket
    for _ in range(100):
        limiter.take("a", "admin", 0.1)


def test_a_key_over_its_limit_gets_429_with_retry_after_and_it_is_counted(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker=f"127.0.0.1:{free_port()}",
        api_keys=f"storefront:{SF1},storefront:{SF2},admin:{AD}",
        rate_limits="storefront:0.5:2",
    )
    with TestClient(create_app(settings)) as c:
        headers = {"Authorization": f"Bearer {AD}"}
        assert c.put("/v1/catalogs/shop", json={"actions": [{"id": "a"}]}, headers=headers)
        decide = {"catalog": "shop"}
        first = {"Authorization": f"Bearer {SF1}"}
        assert [c.post("/v1/decide", json=decide, headers=first).status_code for _ in range(2)] == [
            200,
            200,
        ]
        refused = c.post("/v1/decide", json=decide, headers=first)
        body = problem(refused, 429, "Authorization", kind="rate-limited")
        assert "0.5 requests a second" in body["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        other = {"Authorization": f"Bearer {SF2}"}
        assert c.post("/v1/decide", json=decide, headers=other).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert samples(c.get("/metrics").text)["loopwise_rate_limited_total"] == 1


def shed_app(gate: Gate, release: asyncio.Event) -> Shedder:
    async def slow(request: Request) -> Response:
        await release.wait()
        return JSONResponse({"ok": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/slow", slow), Route("/healthz", health)])
    return Shedder(app, gate)


def test_beyond_the_inflight_limit_requests_are_shed_at_once_and_health_never() -> None:
    async def run() -> None:
        gate, release = Gate(limit=2), asyncio.Event()
        transport = httpx.ASGITransport(app=shed_app(gate, release))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            while gate.inflight < 2:
                await asyncio.sleep(0.001)
            shed = await asyncio.gather(*(client.get("/slow") for _ in range(3)))
            assert [r.status_code for r in shed] == [503] * 3
            assert all(r.headers["Retry-After"] == "1" for r in shed)
            found = json.loads(shed[0].text)
            assert found["type"] == "urn:loopwise:problem:overloaded"
            assert found["instance"] == "/slow" and "LOOPWISE_MAX_INFLIGHT" in found["detail"]
            assert (await client.get("/healthz")).status_code == 200, "health is never shed"
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert (await client.get("/slow")).status_code == 200, "admitted again at once"
            assert (gate.inflight, gate.shed) == (0, 3)

    asyncio.run(run())
