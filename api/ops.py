"""Operator routes: health, readiness, Prometheus metrics, model and event status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.serving.metrics import quantiles, readiness
from api.serving.state import of
from streams.telemetry import CONTENT_TYPE


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    checks = readiness(of(request))
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
            "freshness_seconds": quantiles(list(st.replica.freshness.get(catalog.name, ()))),
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
    """The standard Prometheus text exposition (api.serving.metrics)."""
    return Response(of(request).metrics.registry.render(), media_type=CONTENT_TYPE)
