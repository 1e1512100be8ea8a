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
    await put_catalog_body(client, catalog, body)


async def put_catalog_body(
    client: httpx.AsyncClient, catalog: str, body: dict[str, object]
) -> dict[str, Any]:
    return await _call(client, "PUT", catalog_path("/v1/catalogs", catalog), body)


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
    baseline: str | None = None,
) -> dict[str, Any]:
    body = decide_body(catalog, context, user_id, session_id, debug, baseline)
    return await _call(client, "POST", "/v1/decide", body)


def decide_body(
    catalog: str,
    context: dict[str, object],
    user_id: str,
    session_id: str | None = None,
    debug: bool = False,
    baseline: str | None = None,
) -> dict[str, object]:
    """The body of `POST /v1/decide`; `baseline` only for apprentice and logging modes."""
    body: dict[str, object] = {"catalog": catalog, "context": context, "user_id": user_id}
    if session_id is not None:
        body["session_id"] = session_id
    if debug:
        body["debug"] = True
    if baseline is not None:
        body["baseline"] = baseline
    return body


async def reward(client: httpx.AsyncClient, event_id: str, value: float) -> str:
    """Post a reward; its status as the API answered it (accepted, late or pending)."""
    response = await send(client, "POST", "/v1/rewards", {"event_id": event_id, "value": value})
    raise_for_problem(response, "POST", "/v1/rewards")
    return str(_json_object(response, "POST", "/v1/rewards").get("status"))


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


# -- experiments, evaluations, modes and failover (marketer routes) ---------------------


async def put_experiment(
    client: httpx.AsyncClient, catalog: str, experiment: dict[str, object]
) -> dict[str, Any]:
    return await _call(client, "PUT", _experiment_path(catalog), experiment)


async def delete_experiment(client: httpx.AsyncClient, catalog: str) -> None:
    path = _experiment_path(catalog)
    raise_for_problem(await send(client, "DELETE", path), "DELETE", path)


async def experiment_results(client: httpx.AsyncClient, catalog: str) -> dict[str, Any]:
    return await _call(client, "GET", f"{_experiment_path(catalog)}/results")


async def experiment_svg(client: httpx.AsyncClient, catalog: str) -> str:
    """The API's own picture of the results (`results.svg`)."""
    path = f"{_experiment_path(catalog)}/results.svg"
    response = await send(client, "GET", path)
    raise_for_problem(response, "GET", path)
    return response.text


async def start_evaluation(client: httpx.AsyncClient, catalog: str, body: dict[str, object]) -> str:
    """Start an off-policy evaluation job; the path to poll for it."""
    path = f"{catalog_path('/v1/catalogs', catalog)}/evaluations"
    location = (await _call(client, "POST", path, body)).get("location")
    if not isinstance(location, str) or not location.startswith("/"):
        raise Unavailable(f"POST {path} answered location={location!r}, expected a path")
    return location


async def evaluation(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """An evaluation job's state: progress while it runs, then its estimates."""
    return await _call(client, "GET", location)


async def put_mode(client: httpx.AsyncClient, catalog: str, mode: str) -> dict[str, Any]:
    path = f"{catalog_path('/v1/catalogs', catalog)}/mode"
    return await _call(client, "PUT", path, {"mode": mode})


async def apprentice(client: httpx.AsyncClient, catalog: str) -> dict[str, Any]:
    return await _call(client, "GET", f"{catalog_path('/v1/catalogs', catalog)}/apprentice")


async def put_failover(
    client: httpx.AsyncClient, catalog: str, mode: str, reason: str | None = None
) -> dict[str, Any]:
    body: dict[str, object] = {"mode": mode}
    if reason is not None:
        body["reason"] = reason
    return await _call(client, "PUT", _failover_path(catalog), body)


async def failover(client: httpx.AsyncClient, catalog: str) -> dict[str, Any]:
    return await _call(client, "GET", _failover_path(catalog))


def _experiment_path(catalog: str) -> str:
    return f"{catalog_path('/v1/catalogs', catalog)}/experiment"


def _failover_path(catalog: str) -> str:
    return f"{catalog_path('/v1/catalogs', catalog)}/failover"
