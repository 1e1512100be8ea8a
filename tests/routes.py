"""In-process route tests: the app built by api.app.create_app, spoken to through
Starlette's TestClient (its lifespan runs, so the serving state is real). No broker runs:
the broker address is a free port, so the outbox keeps what the routes send, the replicas
stay empty unless a test applies changelog records to them, and readiness fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from api.app import create_app
from api.serving.state import State
from engine.records import DecisionLogged, decode
from streams.broker import free_port
from streams.settings import Settings

PROBLEM = "application/problem+json"


@contextmanager
def app_client(data_dir: Path, **settings: Any) -> Iterator[TestClient]:
    """A TestClient of the whole app, its lifespan running; `settings` as Settings takes."""
    config = Settings(data_dir=data_dir, broker=f"127.0.0.1:{free_port()}", **settings)
    with TestClient(create_app(config)) as client:
        yield client


def state_of(client: TestClient) -> State:
    """The serving state the lifespan opened (what a route reaches through `of`)."""
    state: State = client.app_state["lw"]
    return state


def problem(
    r: httpx.Response,
    status: int,
    field: str | None = None,
    *,
    kind: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Assert an RFC 9457 answer: its status, media type, `type` slug, `title`, the field
    it names (None: none named), a detail and the request path as `instance`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"], body
    assert body.get("field") == field, body
    assert body["instance"] == r.request.url.path, body
    if kind is not None:
        assert body["type"] == f"urn:loopwise:problem:{kind}", body
    if title is not None:
        assert body["title"] == title, body
    return body


def logged(st: State, event_id: str) -> DecisionLogged:
    """The decision `event_id` as the API wrote it to its outbox."""
    for p in st.outbox.pending:
        if p.key == event_id.encode():
            record = decode(p.value)
            assert isinstance(record, DecisionLogged)
            return record
    raise AssertionError(f"{event_id} was not logged")
