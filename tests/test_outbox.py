"""Decisions never wait on Kafka: with the broker away the API still decides, keeps every
accepted message in its durable outbox, and delivers them all once the broker is back."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from loopwise.supervisor import Child
from streams.broker import EmbeddedBroker, free_port
from tests.conftest import loopwise_env, wait_until

pytestmark = pytest.mark.integration


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def test_decide_answers_without_a_broker_and_the_outbox_drains_later(tmp_path: Path) -> None:
    broker_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    api = Child(
        "api", loopwise_env(tmp_path, port, f"127.0.0.1:{broker_port}"), tmp_path / "api.log"
    ).start()
    broker = EmbeddedBroker(broker_port, tmp_path / "broker.log")
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 30, "the API")
        assert httpx.get(f"{url}/readyz").status_code == 503, "not ready without a broker"
        body = {"actions": [{"id": "a"}, {"id": "b"}]}
        assert httpx.put(f"{url}/v1/catalogs/shop", json=body).status_code == 201
        events = []
        for i in range(20):
            d = httpx.post(f"{url}/v1/decide", json={"catalog": "shop", "context": {"i": i}})
            assert d.status_code == 200 and d.json()["logged"] is True
            events.append(d.json()["event_id"])
        r = httpx.post(f"{url}/v1/rewards", json={"event_id": events[0], "value": 1})
        assert r.status_code == 202
        assert metric(url, "loopwise_outbox_pending") == 21
        assert metric(url, "loopwise_broker_connected") == 0

        broker.start()
        wait_until(
            lambda: metric(url, "loopwise_outbox_pending") == 0,
            60,
            f"the outbox to drain\n{api.tail()}",
        )
        assert metric(url, "loopwise_outbox_sent_total") == 21
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 30, "readiness")
    finally:
        api.stop()
        broker.stop()
