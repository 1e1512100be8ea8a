"""The Loopwise HTTP API as the simulator calls it: one client, one call per route.

A failed request, an error status or an answer that is not a JSON object raises
`Unavailable` naming the route, the status and the problem's title and detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from engine.errors import Unavailable
from sim.config import SimConfig
from sim.storefront import Environment

REQUEST_TIMEOUT_S = 10.0
# Idle connections are dropped well before the server's keep-alive (uvicorn: 5 s) closes
# them: at httpx's default of 5 s a request could race the server's close (ReadError).
KEEPALIVE_EXPIRY_S = 2.0
POLL_INTERVAL_S = 0.25  # how often a wait asks the server again


def connect(config: SimConfig) -> httpx.AsyncClient:
    headers = {"User-Agent": "loopwise-simulate"}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return httpx.AsyncClient(
        base_url=config.base_url,
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
        limits=httpx.Limits(
            max_connections=config.concurrency + 2, keepalive_expiry=KEEPALIVE_EXPIRY_S
        ),
    )


async def send(
    client: httpx.AsyncClient, method: str, path: str, body: object = None
) -> httpx.Response:
    try:
        return await client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise Unavailable(f"{method} {path} failed: {exc!r}") from exc


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: object = None
) -> dict[str, Any]:
    response = await send(client, method, path, body)
    raise_for_problem(response, method, path)
    return _json_object(response, method, path)


def raise_for_problem(response: httpx.Response, method: str, path: str) -> None:
    if response.is_success:
        return
    title, detail = _problem(response)
    raise Unavailable(
        f"{method} {path} returned {response.status_code} {title}: {detail}", field=path
    )


def _problem(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase, response.text[:300] or "(empty body)"
    if not isinstance(body, dict):
        return response.reason_phrase, str(body)[:300]
    title = str(body.get("title") or response.reason_phrase)
    return title, str(body.get("detail") or body)[:300]


def _json_object(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise Unavailable(f"{method} {path} answered with invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Unavailable(f"{method} {path} answered {type(body).__name__}, expected an object")
    return body


def catalog_path(prefix: str, catalog: str) -> str:
    return f"{prefix}/{quote(catalog, safe='')}"


async def put_catalog(
    client: httpx.AsyncClient,
    catalog: str,
    env: Environment,
    uniform: bool = False,
    inventory: bool = False,
    cap: int | None = None,
    exploration_floor: float = 0.0,
    feature_store: bool = True,
) -> None:
    body = env.catalog_body(catalog, inventory=inventory, cap=cap)
    if not feature_store:
        body["features"] = []
    if uniform:
        learning = body["learning"]
        if isinstance(learning, dict):
            body["learning"] = {**learning, "policy": "uniform"}
    if exploration_floor > 0:
        constraints = body.get("constraints", {})
        if isinstance(constraints, dict):
            body["constraints"] = {**constraints, "exploration_floor": exploration_floor}
    await _call(client, "PUT", catalog_path("/v1/catalogs", catalog), body)


async def learned(client: httpx.AsyncClient, catalog: str) -> int:
    """Examples the server has learned for `catalog`; 0 while it has no model yet."""
    path = catalog_path("/v1/models", catalog)
    response = await send(client, "GET", path)
    if response.status_code == httpx.codes.NOT_FOUND:
        return 0
    raise_for_problem(response, "GET", path)
    learned = _json_object(response, "GET", path).get("learned")
    if isinstance(learned, bool) or not isinstance(learned, int):
        raise Unavailable(f"GET {path} answered learned={learned!r}, expected an integer")
    return learned


async def decide(
    client: httpx.AsyncClient,
    catalog: str,
    context: dict[str, object],
    user_id: str,
    session_id: str | None = None,
    debug: bool = False,
) -> dict[str, Any]:
    body: dict[str, object] = {"catalog": catalog, "context": context, "user_id": user_id}
    if session_id is not None:
        body["session_id"] = session_id
    if debug:
        body["debug"] = True
    return await _call(client, "POST", "/v1/decide", body)


async def reward(client: httpx.AsyncClient, event_id: str, value: float) -> None:
    response = await send(client, "POST", "/v1/rewards", {"event_id": event_id, "value": value})
    raise_for_problem(response, "POST", "/v1/rewards")


async def post_events(client: httpx.AsyncClient, events: Sequence[dict[str, object]]) -> None:
    body: object = events[0] if len(events) == 1 else {"events": list(events)}
    await _call(client, "POST", "/v1/events", body)


async def server_level(client: httpx.AsyncClient, sku: str) -> float | None:
    """The stock level the server decides with; None while it knows none. Raises
    `PermissionError` when the key may not read inventory (a storefront key)."""
    path = catalog_path("/v1/inventory", sku)
    response = await send(client, "GET", path)
    if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise PermissionError(path)
    if response.status_code == httpx.codes.NOT_FOUND:
        return None
    raise_for_problem(response, "GET", path)
    level = _json_object(response, "GET", path).get("level")
    if isinstance(level, bool) or not isinstance(level, int | float):
        raise Unavailable(f"GET {path} answered level={level!r}, expected a number")
    return float(level)
