"""api.problems: every error is an RFC 9457 problem+json answer, whatever raised it.

EngineErrors map to their status, a `type` slug of their class and their title, naming
the field; unknown routes and methods are `http` problems; anything else is a logged 500
whose body says nothing more. With API keys configured, every guarded route answers 401
and 403 problems (role by role: test_auth.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from api import problems
from api.app import create_app
from engine import errors
from engine.errors import EngineError
from streams.broker import free_port
from streams.settings import Settings
from tests.routes import problem

SF, MK, AD = "sf-key-0123456789abcdef", "mk-key-0123456789abcdef", "ad-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("error", "slug"),
    [
        (errors.InvalidInput, "invalid-input"),
        (errors.LimitExceeded, "limit-exceeded"),
        (errors.PayloadTooLarge, "payload-too-large"),
        (errors.MalformedBody, "malformed-body"),
        (errors.UnknownCatalog, "unknown-catalog"),
        (errors.CorruptCheckpoint, "corrupt-checkpoint"),
        (EngineError, "engine-error"),
    ],
)
def test_the_type_slug_is_the_class_name_in_kebab_case(error: type[EngineError], slug: str) -> None:
    assert problems.slug(error) == slug


def test_a_problem_names_only_what_it_is_given() -> None:
    r = problems.problem(409, "Conflict", "stale", kind="conflict")
    assert r.status_code == 409 and r.media_type == problems.MEDIA_TYPE
    assert r.body == (
        b'{"type":"urn:loopwise:problem:conflict","title":"Conflict","status":409,"detail":"stale"}'
    )


RAISED: dict[str, Exception] = {
    "invalid": errors.InvalidInput("x must be a number", field="x"),
    "limit": errors.LimitExceeded("x is 2, beyond the limit of 1", field="x"),
    "conflict": errors.Conflict("event id e names another request", field="event_id"),
    "unavailable": errors.Unavailable("the outbox is full"),
    "unexpected": RuntimeError("a bug with a secret in it"),
}


async def boom(request: Request) -> Response:
    raise RAISED[request.path_params["what"]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("problems"), broker=f"127.0.0.1:{free_port()}"
    )
    app = create_app(settings)
    app.router.routes.append(Route("/boom/{what}", boom))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("what", "status", "field", "kind", "title"),
    [
        ("invalid", 422, "x", "invalid-input", "Invalid input"),
        ("limit", 422, "x", "limit-exceeded", "Limit exceeded"),
        ("conflict", 409, "event_id", "conflict", "Conflict"),
        ("unavailable", 503, None, "unavailable", "Service unavailable"),
    ],
)
def test_an_engine_error_is_its_status_type_title_and_field(
    client: TestClient, what: str, status: int, field: str | None, kind: str, title: str
) -> None:
    found = problem(client.get(f"/boom/{what}"), status, field, kind=kind, title=title)
    assert found["detail"] == str(RAISED[what])


def test_a_server_side_engine_error_is_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.problems"):
        client.get("/boom/unavailable")
        client.get("/boom/invalid")  # the client's fault: not logged
    assert [r.getMessage() for r in caplog.records] == ["GET /boom/unavailable: the outbox is full"]


def test_an_unexpected_error_is_a_logged_500_that_tells_nothing(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api.problems"):
        r = client.get("/boom/unexpected")
    found = problem(r, 500, None, kind="internal", title="Internal error")
    assert found["detail"] == "an unexpected error occurred; it has been logged"
    assert "secret" not in r.text
    logged = [r for r in caplog.records if r.name == "api.problems"]
    assert logged and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError


@pytest.mark.parametrize(
    ("method", "path", "status", "title", "detail"),
    [
        ("GET", "/v2/decide", 404, "Not found", "Not Found"),
        ("GET", "/v1/decide", 405, "HTTP error", "Method Not Allowed"),
        ("POST", "/healthz", 405, "HTTP error", "Method Not Allowed"),
        ("PATCH", "/v1/catalogs/shop", 405, "HTTP error", "Method Not Allowed"),
    ],
)
def test_unknown_routes_and_methods_are_http_problems(
    client: TestClient, method: str, path: str, status: int, title: str, detail: str
) -> None:
    found = problem(client.request(method, path), status, None, kind="http", title=title)
    assert found["detail"] == detail


# Every guarded route, its role, and a key of another role.
GUARDED = [
    ("POST", "/v1/decide", "storefront", MK),
    ("POST", "/v1/rewards", "storefront", MK),
    ("POST", "/v1/events", "storefront", MK),
    ("GET", "/v1/events/e-1", "storefront", MK),
    ("GET", "/v1/inventory/sku-1", "marketer", SF),
    ("GET", "/v1/catalogs", "marketer", SF),
    ("GET", "/v1/catalogs/shop", "marketer", SF),
    ("PUT", "/v1/catalogs/shop", "marketer", SF),
    ("DELETE", "/v1/catalogs/shop", "marketer", SF),
    ("GET", "/v1/models/shop", "marketer", SF),
    ("GET", "/v1/catalogs/shop/performance", "marketer", SF),
    ("GET", "/v1/catalogs/shop/performance.svg", "marketer", SF),
    ("GET", "/v1/catalogs/shop/actions/a/why", "marketer", SF),
    ("POST", "/v1/catalogs/shop/actions/a/why", "marketer", SF),
    ("GET", "/v1/features?user_id=u", "marketer", SF),
    ("GET", "/v1/users/u/features", "marketer", SF),
    ("DELETE", "/v1/users/u", "admin", MK),
    ("DELETE", "/v1/users?user_id=u", "admin", SF),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    keys = f"storefront:{SF},marketer:{MK},admin:{AD}"
    data: Path = tmp_path_factory.mktemp("guarded")
    settings = Settings(data_dir=data, broker=f"127.0.0.1:{free_port()}", api_keys=keys)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "role", "other"), GUARDED)
def test_every_guarded_route_answers_401_and_403_problems(
    guarded: TestClient, method: str, path: str, role: str, other: str
) -> None:
    missing = problem(
        guarded.request(method, path),
        401,
        "Authorization",
        kind="unauthorized",
        title="Unauthorized",
    )
    assert "Bearer" in missing["detail"]
    wrong = guarded.request(method, path, headers={"Authorization": f"Bearer {other}"})
    found = problem(wrong, 403, "Authorization", kind="forbidden", title="Forbidden")
    assert f"this route needs {role!r}" in found["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_the_operator_routes_need_no_key(guarded: TestClient, path: str) -> None:
    assert guarded.get(path).status_code in (200, 503)  # readiness fails without a broker
