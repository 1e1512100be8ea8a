"""The Starlette application: routes, lifespan-held state and error mapping."""

from __future__ import annotations

from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from api import (
    activate,
    apprentice,
    catalogs,
    decide,
    evaluations,
    events,
    experiments,
    failover,
    ops,
    performance,
    problems,
    rewards,
    users,
    versions,
    whoami,
    why,
)
from api.dashboard.routes import routes as dashboard_routes
from api.openapi import routes as openapi
from api.personalizer.routes import routes as personalizer_routes
from api.serving.admission import Gate, Shedder
from api.serving.state import lifespan_for
from engine.errors import EngineError
from streams.settings import Settings


def create_app(settings: Settings) -> Starlette:
    routes = [
        Route("/healthz", ops.healthz),
        Route("/readyz", ops.readyz),
        Route("/metrics", ops.metrics),
        Route("/openapi.json", openapi.openapi_json),
        Route("/docs", openapi.docs),
        Route("/v1/decide", decide.decide_route, methods=["POST"]),
        Route("/v1/rewards", rewards.rewards, methods=["POST"]),
        Route("/v1/events", events.events, methods=["POST"]),
        Route("/v1/inventory/{sku}", events.stock),
        Route("/v1/catalogs", catalogs.list_catalogs),
        Route("/v1/catalogs/{name}", catalogs.get_catalog, methods=["GET"]),
        Route("/v1/catalogs/{name}", catalogs.put_catalog, methods=["PUT"]),
        Route("/v1/catalogs/{name}", catalogs.delete_catalog, methods=["DELETE"]),
        Route("/v1/catalogs/{name}/versions", versions.list_versions),
        Route("/v1/catalogs/{name}/versions/{version}", versions.get_version),
        Route("/v1/catalogs/{name}/failover", failover.get_failover, methods=["GET"]),
        Route("/v1/catalogs/{name}/failover", failover.put_failover, methods=["PUT"]),
        Route("/v1/catalogs/{name}/experiment", experiments.get_experiment, methods=["GET"]),
        Route("/v1/catalogs/{name}/experiment", experiments.put_experiment, methods=["PUT"]),
        Route("/v1/catalogs/{name}/experiment", experiments.delete_experiment, methods=["DELETE"]),
        Route(
            "/v1/catalogs/{name}/experiment/arms/{arm}", experiments.patch_arm, methods=["PATCH"]
        ),
        Route("/v1/catalogs/{name}/experiment/results", experiments.get_results),
        Route("/v1/catalogs/{name}/experiment/results.svg", experiments.get_results),
        Route("/v1/catalogs/{name}/performance", performance.get_performance),
        Route("/v1/catalogs/{name}/performance.svg", performance.get_performance),
        Route("/v1/catalogs/{name}/actions/{action}/why", why.why, methods=["GET", "POST"]),
        Route("/v1/catalogs/{name}/evaluations", evaluations.start, methods=["POST"]),
        Route("/v1/catalogs/{name}/evaluations", evaluations.listing, methods=["GET"]),
        Route("/v1/catalogs/{name}/optimizations", evaluations.optimize, methods=["POST"]),
        Route("/v1/catalogs/{name}/evaluations/{id}", evaluations.status),
        Route("/v1/catalogs/{name}/apprentice", apprentice.get_apprentice),
        Route("/v1/catalogs/{name}/mode", apprentice.put_mode, methods=["PUT"]),
        Route("/v1/models/{catalog}", ops.model),
        Route("/v1/events/{event_id:path}/activate", activate.activate_route, methods=["POST"]),
        Route("/v1/events/{event_id:path}", ops.event),
        Route("/v1/features", users.features),
        Route("/v1/users/{user_id:path}/features", users.features),
        Route("/v1/users", users.erase, methods=["DELETE"]),
        Route("/v1/users/{user_id:path}", users.erase, methods=["DELETE"]),
        Route("/v1/whoami", whoami.whoami),
        *personalizer_routes(),  # Azure Personalizer's API (docs/migration-from-personalizer.md)
        *dashboard_routes(),  # the marketers' dashboard under /ui/ (api/dashboard)
    ]
    gate = Gate(settings.max_inflight)  # load shedding, shown by the state's /metrics
    return Starlette(
        routes=routes,
        middleware=[Middleware(Shedder, gate=gate)],
        lifespan=partial(lifespan_for, settings, gate),
        exception_handlers={
            EngineError: problems.engine_error,
            HTTPException: problems.not_found,
            Exception: problems.unexpected,
        },
    )
