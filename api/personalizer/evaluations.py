"""Offline evaluations: Personalizer's evaluation contract as a Loopwise evaluation job
(api.serving.jobs, engine.evaluation), and the job's estimates as Personalizer's answer.

An evaluation replays the loop's log over [startTime, endTime) and estimates, for each
policy, what it would have earned: the loop's current settings (policySource Online), the
first action not excluded (Baseline: the `first` rule, since a loop's actions are in
request order), uniformly random (Random), and each contract policy (Custom: its VW
arguments, api.personalizer.policy). `enableOfflineExperimentation` (the 2022 preview's
`enablePolicyOptimization`) searches Loopwise's grid of learning settings besides, and
answers the best as `optimalPolicy` without applying it; applyFromEvaluation applies a
policy's learning settings (a new model: Loopwise does not keep an evaluation's models).

Each policy's totalSummary is the SNIPS estimate (`averageReward`) with its interval's
half-width (`confidenceInterval`), the IPS numerator and denominator, and the share of
rows it could be judged on (`nonZeroProbability`); `loopwise` adds every estimate as the
Loopwise evaluation reports it (IPS, SNIPS, doubly robust, their intervals, or why the
log cannot support one).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.personalizer import policy
from api.personalizer.bodies import EvaluationContract, PolicyReferenceContract
from api.personalizer.configuration import iso
from api.personalizer.dialects import Dialect, loop_name
from api.personalizer.errors import PersonalizerError
from api.personalizer.loops import join_settings, loop
from api.serving.optimizations import job_spec, with_current
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import InvalidInput, UnknownEvent
from engine.evaluation import parse_candidates, parse_window
from engine.learning import learning_json, parse_learning
from engine.limits import Limits
from engine.optimize import CURRENT, GRID
from engine.validate import ID_RE

ONLINE, BASELINE, RANDOM = "Online Policy", "Baseline", "Random"
STATES = {"starting": "pending", "running": "pending", "done": "completed"}
TITLES = {"starting": "Running", "running": "Running", "done": "Succeeded", "stopped": "Canceled"}


async def create(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    req = requests.convert(
        await bodies.json_object(request, st.settings.limits), EvaluationContract
    )
    catalog = await loop(st, loop_name(request, st))
    given = request.path_params.get("evaluation_id")
    if given is not None and (not ID_RE.fullmatch(given) or "/" in given or given[0] == "."):
        raise InvalidInput(
            "the evaluation id must be 1-128 printable characters without '/'",
            field="evaluationId",
        )
    since, until = (_time(req.start_time, "startTime"), _time(req.end_time, "endTime"))
    limits = st.settings.limits
    parse_window({"since": since, "until": until}, limits, time.time())
    candidates, optimize = _candidates(st, catalog, req)
    try:
        parse_candidates(candidates, catalog, limits)
    except InvalidInput as exc:
        raise PersonalizerError(400, "InvalidEvaluationContract", exc.detail, "policies") from exc
    extra: dict[str, Any] = {"personalizer": {"name": req.name, "created": time.time()}}
    if optimize:
        extra.update(kind="optimize", promote=False)
    spec = job_spec(st, catalog, (since, until), 0.05, candidates, extra)
    try:
        job_id = st.jobs.start(catalog.name, spec, given)
    except FileExistsError:
        raise PersonalizerError(
            409, "InvalidEvaluationContract", f"evaluation {given!r} exists", "evaluationId"
        ) from None
    body = _evaluation(st, catalog, job_id, dialect)
    location = f"{request.url.path.rsplit('/evaluations', 1)[0]}/evaluations/{job_id}"
    status = 200 if dialect.paged_lists else 201
    return JSONResponse(body, status_code=status, headers={"Location": location})


async def get(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    return JSONResponse(_evaluation(st, catalog, request.path_params["evaluation_id"], dialect))


async def listing(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    folder = st.jobs.root / catalog.name
    ids = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    found = [_evaluation(st, catalog, i, dialect) for i in ids]
    return JSONResponse({"value": found, "nextLink": None} if dialect.paged_lists else found)


async def delete(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    try:
        await run_in_threadpool(st.jobs.delete, catalog.name, request.path_params["evaluation_id"])
    except UnknownEvent as exc:
        raise PersonalizerError(404, "EvaluationNotFound", exc.detail, "evaluationId") from exc
    return Response(status_code=204)


async def apply(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    req = requests.convert(
        await bodies.json_object(request, st.settings.limits), PolicyReferenceContract
    )
    catalog = await loop(st, loop_name(request, st))
    status = _status(st, catalog, req.evaluation_id)
    if status.get("state") != "done":
        raise PersonalizerError(
            409,
            "OperationNotAllowed",
            f"evaluation {req.evaluation_id!r} is {status.get('state')}, not completed",
            "evaluationId",
        )
    chosen = [c for c in status.get("candidates", []) if c.get("name") == req.policy_name]
    learning = chosen[0].get("spec", {}).get("learning") if chosen else None
    if not isinstance(learning, dict):
        raise PersonalizerError(
            404,
            "LearningSettingsNotFound",
            f"evaluation {req.evaluation_id!r} has no learning settings named "
            f"{req.policy_name!r} (Baseline and Random are rules, not learning settings)",
            "policyName",
        )

    def edit(body: dict[str, Any]) -> None:
        body["learning"] = {**learning, **join_settings(body)}

    await run_in_threadpool(st.catalogs.edit, catalog.name, edit, time.time())
    return Response(status_code=204)


def _candidates(
    st: State, catalog: Catalog, req: EvaluationContract
) -> tuple[list[dict[str, Any]], bool]:
    names = [p.name for p in req.policies]
    reserved = {ONLINE, BASELINE, RANDOM, CURRENT, *(str(c["name"]) for c in GRID)}
    for i, name in enumerate(names):
        if names.index(name) != i or name in reserved:
            raise PersonalizerError(
                400,
                "DuplicateCustomPolicyNames",
                f"policies[{i}].name {name!r} is used twice or names a policy the evaluation "
                f"adds itself ({', '.join(sorted(reserved))})",
                f"policies[{i}].name",
            )
    custom = []
    for i, p in enumerate(req.policies):
        try:
            custom.append({"name": p.name, "learning": policy.learning_body(p.arguments)})
        except InvalidInput as exc:
            raise PersonalizerError(
                400, "InvalidPolicyConfiguration", exc.detail, f"policies[{i}].arguments"
            ) from exc
    if req.enable_offline_experimentation or req.enable_policy_optimization:
        return with_current(catalog, [*(dict(c) for c in GRID), *custom]), True
    online = {"name": ONLINE, "learning": learning_json(catalog.learning)}
    rules = [{"name": BASELINE, "rule": "first"}, {"name": RANDOM, "rule": "uniform"}]
    return [online, *rules, *custom], False


def _status(st: State, catalog: Catalog, job_id: str) -> dict[str, Any]:
    try:
        return st.jobs.status(catalog.name, job_id)
    except UnknownEvent as exc:
        raise PersonalizerError(404, "EvaluationNotFound", exc.detail, "evaluationId") from exc


def _evaluation(st: State, catalog: Catalog, job_id: str, dialect: Dialect) -> dict[str, Any]:
    status = _status(st, catalog, job_id)
    spec = st.jobs.spec(catalog.name, job_id)
    meta = spec.get("personalizer") or {}
    state = str(status.get("state", "starting"))
    out: dict[str, Any] = {
        "id": job_id,
        "name": meta.get("name", job_id),
        "startTime": iso(float(spec["since"])),
        "endTime": iso(float(spec["until"])),
        "jobId": job_id,
        "status": (TITLES if dialect.title_statuses else STATES).get(state, "failed"),
        "evaluationType": "Auto" if spec.get("scheduled") else "Manual",
        "creationTime": iso(float(meta.get("created", spec["since"]))),
    }
    results = [_result(c) for c in status.get("candidates", []) if "logged" in c]
    if dialect.title_statuses:
        out["content"] = {"value": [_preview_result(r) for r in results]}
    else:
        out["policyResults"] = results
    verdict = status.get("verdict")
    if isinstance(verdict, dict):
        out["optimalPolicy"] = verdict.get("promote") or CURRENT
    if "error" in status:
        out["loopwise"] = {"error": status["error"]}
    return out


def _result(candidate: dict[str, Any]) -> dict[str, Any]:
    name = str(candidate["name"])
    spec = candidate.get("spec", {})
    snips, ips = candidate.get("snips", {}), candidate.get("ips", {})
    summary: dict[str, Any] = {}
    if snips.get("supported"):
        n = int(snips["n"])
        summary = {
            "ipsEstimatorNumerator": ips.get("estimate", 0.0) * n if ips.get("supported") else None,
            "ipsEstimatorDenominator": n,
            "averageReward": snips["estimate"],
            "confidenceInterval": (snips["high"] - snips["low"]) / 2,
            "nonZeroProbability": 1.0 - float(snips.get("zero_share", 0.0)),
        }
    return {
        "name": name,
        "arguments": _arguments(spec),
        "policySource": _source(name, spec),
        "summary": [summary] if summary else [],
        "totalSummary": summary,
        "loopwise": {m: candidate.get(m) for m in ("logged", "ips", "snips", "dr")},
    }


def _preview_result(r: dict[str, Any]) -> dict[str, Any]:
    """The 2022-09-01-preview's shape of one policy's result."""
    total = r["totalSummary"]
    low_high = []
    if total:
        half = total["confidenceInterval"]
        low_high = [total["averageReward"] - half, total["averageReward"] + half]
    return {
        "name": r["name"],
        "arguments": r["arguments"],
        "policySource": r["policySource"],
        "summary": {"expectedReward": total.get("averageReward"), "confidenceInterval": low_high},
        "loopwise": r["loopwise"],
    }


def _arguments(spec: dict[str, Any]) -> str:
    learning = spec.get("learning")
    if not isinstance(learning, dict):
        return ""
    try:
        return policy.arguments(parse_learning(learning, Limits()))
    except InvalidInput:
        return ""


def _source(name: str, spec: dict[str, Any]) -> str:
    if name in (ONLINE, CURRENT):
        return "Online"
    if name == BASELINE:
        return "Baseline"
    if name == RANDOM:
        return "Random"
    if any(name == c["name"] for c in GRID):
        return "OfflineExperimentation"
    return "Custom"


def _time(text: str, field: str) -> float:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 date-time such as 2026-08-25T00:00:00Z, got {text!r}",
            field=field,
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
