"""The Personalizer routes, mounted once per API version, with and without a loop prefix:
`/personalizer/v1.0/...`, `/personalizer/v1.1-preview.3/...`, `/personalizer/...?
api-version=2022-09-01-preview`, and each under `/loops/{loop}`. Every route of both specs
is here: served, or refused with its reason (501); any other path under a mount is
Personalizer's 404."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route

from api.personalizer import admin, configuration, evaluations, events, rank
from api.personalizer.dialects import PREVIEW_2022, V1_0, V1_1, Dialect
from api.personalizer.errors import Handler, endpoint, no_route, not_served

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
RANK, REWARD = "InvalidRankRequest", "InvalidRewardRequest"
SERVICE, POLICY = "InvalidServiceConfiguration", "InvalidPolicyConfiguration"
EVALUATION, ACTIVATE = "InvalidEvaluationContract", "InvalidEventIdToActivate"
LOGS_REFUSED = (
    "Loopwise's decision, reward and training logs are Kafka topics shared by every loop "
    "and kept by their retention (the embedded broker: LOOPWISE_BROKER_RETENTION_SECONDS); "
    "they cannot be deleted for one loop. A user's data is erased with DELETE /v1/users/{id}"
)
INTERACTIONS_REFUSED = (
    "this endpoint takes the binary logs of Personalizer's local-inference SDKs "
    "(VowpalWabbit/reinforcement_learning); Loopwise decides on the server: call /rank"
)
FEATURE_IMPORTANCE_REFUSED = (
    "feature importance evaluations are not implemented in Loopwise; an evaluation with "
    "a policy whose features differ estimates what a feature set earns"
)


def _routes(dialect: Dialect) -> list[BaseRoute]:
    def r(path: str, method: str, handler: Handler, invalid: str = "BadRequest") -> Route:
        return Route(path, endpoint(handler, dialect, invalid), methods=[method])

    out: list[BaseRoute] = [
        r("/rank", "POST", rank.rank, RANK),
        r("/events/{event_id:path}/reward", "POST", events.reward, REWARD),
        r("/events/{event_id:path}/activate", "POST", events.activate, ACTIVATE),
        r("/configurations/service", "GET", configuration.get_service, SERVICE),
        r("/configurations/service", "PUT", configuration.put_service, SERVICE),
        r("/configurations/policy", "GET", admin.get_policy, POLICY),
        r("/configurations/policy", "PUT", admin.put_policy, POLICY),
        r("/configurations/policy", "DELETE", admin.delete_policy, POLICY),
        r("/evaluations", "GET", evaluations.listing, EVALUATION),
        r("/evaluations/{evaluation_id}", "GET", evaluations.get, EVALUATION),
        r("/evaluations/{evaluation_id}", "DELETE", evaluations.delete, EVALUATION),
        r("/logs", "DELETE", not_served(LOGS_REFUSED)),
        r("/logs/properties", "GET", admin.log_properties),
        r("/model", "GET", admin.get_model),
        r("/model", "DELETE", admin.delete_model),
        r("/model/properties", "GET", admin.model_properties),
    ]
    if dialect is PREVIEW_2022:  # its SDK names the evaluation: PUT /evaluations/{id}
        out.append(r("/evaluations/{evaluation_id}", "PUT", evaluations.create, EVALUATION))
        out += [
            r("/featureImportances", method, not_served(FEATURE_IMPORTANCE_REFUSED))
            for method in ("GET",)
        ]
        out += [
            r("/featureImportances/{fid}", method, not_served(FEATURE_IMPORTANCE_REFUSED))
            for method in ("GET", "PUT", "DELETE")
        ]
    else:
        out.append(r("/evaluations", "POST", evaluations.create, EVALUATION))
    if dialect.multislot:
        out += [
            r("/multislot/rank", "POST", rank.multislot_rank, RANK),
            r("/multislot/events/{event_id:path}/reward", "POST", events.multislot_reward, REWARD),
            r("/multislot/events/{event_id:path}/activate", "POST", events.activate, ACTIVATE),
            r("/model", "PUT", admin.put_model, "InvalidModelImportFormat"),
            r("/configurations/applyFromEvaluation", "POST", evaluations.apply, EVALUATION),
            r("/logs/interactions", "POST", not_served(INTERACTIONS_REFUSED)),
            r("/logs/observations", "POST", not_served(INTERACTIONS_REFUSED)),
        ]
    out.append(Route("/{rest:path}", endpoint(no_route, dialect), methods=ALL_METHODS))
    return out


def routes() -> list[BaseRoute]:
    """The mounts to add to the application's routes (versioned paths first: the
    unversioned mount would match them too)."""
    out: list[BaseRoute] = []
    for prefix in ("", "/loops/{loop}"):
        for dialect in (V1_0, V1_1):
            out.append(Mount(f"{prefix}/personalizer/{dialect.name}", routes=_routes(dialect)))
        out.append(Mount(f"{prefix}/personalizer", routes=_routes(PREVIEW_2022)))
    return out
