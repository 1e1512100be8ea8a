"""The Personalizer-compatible operations (api.personalizer.routes), for every mount: each
API version, with and without `/loops/{loop}`. Their errors are Personalizer's shape
(`{"error": {...}}`), not problem+json; 422 is Personalizer's 400."""

from __future__ import annotations

from typing import Any

from api.openapi import problems
from api.openapi.spec import Answer, Op, Param, operation
from api.personalizer.dialects import PREVIEW_2022, V1_0, V1_1, Dialect
from engine.limits import Limits

P = "Personalizer"
STOREFRONT, MARKETER, ADMIN = "storefront", "marketer", "admin"
ERROR = "PersonalizerErrorResponse"
NOT_SERVED = (Answer(501, "not served by Loopwise: the reason", ERROR),)
VERSION = Param(
    "api-version",
    "query",
    "the API version (default: 2022-09-01-preview, the only one this mount serves)",
    {"enum": [PREVIEW_2022.name]},
)
RANK_EXAMPLE = {
    "actions": [
        {"id": "pasta", "features": [{"cuisine": "italian"}]},
        {"id": "sushi", "features": [{"cuisine": "japanese"}]},
    ],
    "contextFeatures": [{"timeOfDay": "evening"}],
    "eventId": "pz-0001",
}


def error_schema() -> dict[str, Any]:
    slug = {"type": "string", "description": "Loopwise's problem kind (urn:loopwise:problem:...)"}
    inner = {"type": "object", "properties": {"code": slug}}
    return {
        "title": ERROR,
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "v1.0: BadRequest, ResourceNotFound or "
                        "InternalServerError; later versions name what was invalid "
                        "(InvalidRankRequest, InvalidRewardRequest, InvalidEventIdToActivate, "
                        "InvalidServiceConfiguration, InvalidPolicyConfiguration, "
                        "InvalidEvaluationContract, InvalidModelImportFormat, "
                        "EvaluationNotFound, PayloadSizeExceeded, InvalidApiAccess (501), ...); "
                        '"401" or "403" for a key missing or of another role',
                    },
                    "message": {"type": "string"},
                    "target": {"type": "string", "description": "the field at fault"},
                    "innerError": inner,
                },
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    }


def rank_schemas() -> dict[str, Any]:
    ranked = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "probability": {"type": "number"}},
        "required": ["id", "probability"],
    }
    slot = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "rewardActionId": {"type": "string"}},
        "required": ["id", "rewardActionId"],
    }
    return {
        "PersonalizerRankResponse": {
            "type": "object",
            "properties": {
                "ranking": {"type": "array", "items": ranked},
                "eventId": {"type": "string"},
                "rewardActionId": {"type": "string"},
            },
            "required": ["ranking", "eventId", "rewardActionId"],
        },
        "PersonalizerMultiSlotRankResponse": {
            "type": "object",
            "properties": {
                "slots": {"type": "array", "items": slot},
                "eventId": {"type": "string"},
            },
            "required": ["slots", "eventId"],
        },
        ERROR: error_schema(),
    }


def _ops(dialect: Dialect) -> list[Op]:
    tag = f"personalizer {dialect.name}"

    def op(
        method: str,
        path: str,
        summary: str,
        role: str | None,
        answers: tuple[Answer, ...],
        body: str | None = None,
        **extra: Any,
    ) -> Op:
        return Op(method, path, summary, tag, role, answers, body, **extra)

    evaluated = (Answer(200, "the evaluation", "PersonalizerEvaluation"),)
    done = (Answer(204, "done"),)
    service = (Answer(200, "the service configuration", f"{P}ServiceConfiguration"),)
    policy = (Answer(200, "the policy", f"{P}PolicyContract"),)
    events = "/events/{event_id:path}"
    out = [
        op(
            "POST",
            "/rank",
            "Rank actions",
            STOREFRONT,
            (Answer(201, "the ranking", "PersonalizerRankResponse"),),
            f"{P}RankRequest",
            problems=(404, 409),
            example=RANK_EXAMPLE,
        ),
        op(
            "POST",
            f"{events}/reward",
            "Reward an event",
            STOREFRONT,
            done,
            f"{P}RewardRequest",
            problems=(503,),
            example={"value": 1.0},
        ),
        op(
            "POST",
            f"{events}/activate",
            "Activate a deferred event",
            STOREFRONT,
            done,
            problems=(503,),
        ),
        op("GET", "/configurations/service", "The service configuration", MARKETER, service),
        op(
            "PUT",
            "/configurations/service",
            "Set the service configuration",
            MARKETER,
            service,
            f"{P}ServiceConfiguration",
            problems=(409,),
        ),
        op("GET", "/configurations/policy", "The learning policy", MARKETER, policy),
        op(
            "PUT",
            "/configurations/policy",
            "Set the learning policy",
            MARKETER,
            policy,
            f"{P}PolicyContract",
            problems=(409,),
        ),
        op(
            "DELETE",
            "/configurations/policy",
            "Reset the learning policy",
            MARKETER,
            policy,
            problems=(409,),
        ),
        op(
            "GET",
            "/evaluations",
            "List evaluations",
            MARKETER,
            (Answer(200, "the evaluations", "PersonalizerEvaluationList"),),
        ),
        op("GET", "/evaluations/{evaluation_id}", "An evaluation", MARKETER, evaluated),
        op("DELETE", "/evaluations/{evaluation_id}", "Delete an evaluation", MARKETER, done),
        op("DELETE", "/logs", "Delete the logs (not served)", None, NOT_SERVED),
        op(
            "GET",
            "/logs/properties",
            "The logs' date range",
            MARKETER,
            (Answer(200, "from and to", "PersonalizerLogProperties"),),
        ),
        op(
            "GET",
            "/model",
            "Export the model",
            MARKETER,
            (Answer(200, "a zip: the model and its metadata", media="application/octet-stream"),),
        ),
        op("DELETE", "/model", "Reset the model", ADMIN, done),
        op(
            "GET",
            "/model/properties",
            "The model's properties",
            MARKETER,
            (Answer(200, "its times and version", "PersonalizerModelProperties"),),
        ),
    ]
    evaluation = f"{P}EvaluationContract"
    if dialect is PREVIEW_2022:
        created = op(
            "PUT", "/evaluations/{evaluation_id}", "Create an evaluation", MARKETER, evaluated,
            evaluation, problems=(409,),
        )  # fmt: skip
        out.append(created)
        out.append(op("GET", "/featureImportances", "Not served", None, NOT_SERVED))
        out += [
            op(m, "/featureImportances/{fid}", "Not served", None, NOT_SERVED)
            for m in ("GET", "PUT", "DELETE")
        ]
    else:
        answer = Answer(201, "created", "PersonalizerEvaluation", headers=("Location",))
        created = op(
            "POST", "/evaluations", "Create an evaluation", MARKETER, (answer,), evaluation,
            problems=(409,),
        )  # fmt: skip
        out.append(created)
    if dialect.multislot:
        out += [
            op(
                "POST",
                "/multislot/rank",
                "Rank actions for several slots",
                STOREFRONT,
                (Answer(201, "one action per slot", "PersonalizerMultiSlotRankResponse"),),
                f"{P}MultiSlotRankRequest",
                problems=(404, 409),
            ),
            op(
                "POST",
                f"/multislot{events}/reward",
                "Reward a multi-slot event",
                STOREFRONT,
                done,
                f"{P}MultiSlotRewardRequest",
                problems=(503,),
            ),
            op(
                "POST",
                f"/multislot{events}/activate",
                "Activate a multi-slot event",
                STOREFRONT,
                done,
                problems=(503,),
            ),
            op(
                "PUT",
                "/model",
                "Import a model",
                ADMIN,
                done,
                "model",
                body_media="application/octet-stream",
            ),
            op(
                "POST",
                "/configurations/applyFromEvaluation",
                "Apply an evaluation's policy",
                MARKETER,
                done,
                f"{P}PolicyReferenceContract",
                problems=(404, 409),
            ),
            op("POST", "/logs/interactions", "Not served", None, NOT_SERVED),
            op("POST", "/logs/observations", "Not served", None, NOT_SERVED),
        ]
    return out


def mounts() -> list[tuple[str, Dialect]]:
    """Every mount, as api.personalizer.routes builds them."""
    out = []
    for prefix in ("", "/loops/{loop}"):
        for dialect in (V1_0, V1_1):
            out.append((f"{prefix}/personalizer/{dialect.name}", dialect))
        out.append((f"{prefix}/personalizer", PREVIEW_2022))
    return out


def operations(bounds: Limits) -> dict[str, dict[str, dict[str, Any]]]:
    """path -> method -> operation, for every mount."""
    errors = {
        s: {
            "description": f"Personalizer's error (HTTP {s})",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
        }
        for s in (400, 401, 403, 404, 409, 413, 429, 500, 503)
    }
    errors[422] = errors[400]  # never answered: Personalizer's 400 is Loopwise's 422
    errors[404] = _not_found(errors[404])
    errors[503] = _shed(errors[503])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mount, dialect in mounts():
        for op in _ops(dialect):
            if dialect is PREVIEW_2022:
                op = Op(
                    **{
                        **_fields(op),
                        "params": (*op.params, VERSION),
                        "problems": (*op.problems, 400),
                    }
                )
            prefix = mount.strip("/").replace("/", "_").replace("{", "").replace("}", "") + "_"
            path = mount + op.template
            made = operation(op, bounds, errors, prefix)
            made["responses"].pop("422", None)  # 422 is answered as 400 here
            made["responses"].setdefault("400", errors[400])
            made["parameters"] = _loop_first(made.get("parameters", []), mount)
            if not made["parameters"]:
                del made["parameters"]
            out.setdefault(path, {})[op.method.lower()] = made
    return out


def _not_found(personalizers: dict[str, Any]) -> dict[str, Any]:
    """Personalizer's 404, or the app's problem+json when no mount matches the path at all
    (Starlette's mounts do not match a path that holds a line break)."""
    problem = problems.response(404)["content"]
    return {
        "description": f"{personalizers['description']}; a path no mount matches: problem+json",
        "content": {**personalizers["content"], **problem},
    }


def _shed(personalizers: dict[str, Any]) -> dict[str, Any]:
    """Personalizer's 503, or the load shedder's problem+json (api.serving.admission)."""
    shed = problems.response(503)
    return {
        "description": f"{personalizers['description']}; shed under load: problem+json",
        "content": {**personalizers["content"], **shed["content"]},
        "headers": shed["headers"],
    }


def _fields(op: Op) -> dict[str, Any]:
    return {name: getattr(op, name) for name in Op.__slots__}


def _loop_first(params: list[dict[str, Any]], mount: str) -> list[dict[str, Any]]:
    if "{loop}" not in mount:
        return params
    loop = {
        "name": "loop",
        "in": "path",
        "required": True,
        "description": "the loop (a catalog's name); without it, LOOPWISE_PERSONALIZER_LOOP",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64,
                   "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    }  # fmt: skip
    return [loop, *params]
