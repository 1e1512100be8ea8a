"""GET and PUT /configurations/service: Personalizer's service configuration read from,
and written to, the loop's catalog (one new catalog version per PUT).

- rewardWaitTime: learning.reward_wait_seconds (Loopwise's bound: up to 7 days)
- defaultReward: learning.default_reward ([-1, 1], as Personalizer's)
- rewardAggregation: learning.aggregation, earliest or sum
- explorationPercentage: constraints.exploration_floor
- learningMode Online, Apprentice, LoggingOnly: mode online, apprentice, logging
- isAutoOptimizationEnabled, autoOptimizationFrequency: optimization {every_seconds and
  window_seconds the frequency, promote true}
- modelExportFrequency, logRetentionDays, autoOptimizationStartDate, modelRetrainDays: kept
  and answered, without effect (a Loopwise model learns every example as its wait closes;
  logs are kept by the broker's retention)
- logMirrorEnabled: refused when true (Loopwise's logs are Kafka topics to consume)
- lastConfigurationEditDate: the time of the catalog's latest version
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.personalizer import durations, extras
from api.personalizer.bodies import ServiceConfiguration
from api.personalizer.dialects import Dialect, loop_name
from api.personalizer.loops import loop
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import InvalidInput

MODES = {"Online": "online", "Apprentice": "apprentice", "LoggingOnly": "logging"}
NAMES = {v: k for k, v in MODES.items()}
DEFAULT_EXPORT = "PT1S"  # what a Loopwise model's update frequency comes closest to
DEFAULT_RETENTION_DAYS = 90
DEFAULT_OPTIMIZATION = 7 * 86_400.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def answer(st: State, catalog: Catalog) -> dict[str, Any]:
    learning, saved = catalog.learning, extras.read(st, catalog.name)
    optimization = catalog.optimization
    every = optimization.every_seconds if optimization else saved.get("optimizationSeconds")
    out: dict[str, Any] = {
        "rewardWaitTime": durations.format_seconds(learning.reward_wait_seconds),
        "defaultReward": learning.default_reward,
        "rewardAggregation": learning.aggregation,
        "explorationPercentage": catalog.constraints.exploration_floor,
        "modelExportFrequency": saved.get("modelExportFrequency", DEFAULT_EXPORT),
        "logRetentionDays": saved.get("logRetentionDays", DEFAULT_RETENTION_DAYS),
        "logMirrorEnabled": False,
        "lastConfigurationEditDate": iso(catalog.updated_at),
        "learningMode": NAMES.get(catalog.mode, "Online"),
        "isAutoOptimizationEnabled": optimization is not None,
        "autoOptimizationFrequency": durations.format_seconds(every or DEFAULT_OPTIMIZATION),
        "modelRetrainDays": saved.get("modelRetrainDays", 0),
    }
    if "autoOptimizationStartDate" in saved:
        out["autoOptimizationStartDate"] = saved["autoOptimizationStartDate"]
    return out


async def get_service(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    return JSONResponse(answer(st, catalog))


async def put_service(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    raw = await bodies.json_object(request, st.settings.limits)
    req = requests.convert(raw, ServiceConfiguration)
    catalog = await loop(st, loop_name(request, st))
    wait = durations.parse(req.reward_wait_time, "rewardWaitTime")
    durations.parse(req.model_export_frequency, "modelExportFrequency")
    _within(req.default_reward, -1.0, 1.0, "defaultReward")
    _within(req.exploration_percentage, 0.0, 1.0, "explorationPercentage")
    aggregation = req.reward_aggregation.lower()
    if aggregation not in ("earliest", "sum"):
        raise InvalidInput(
            f"rewardAggregation must be earliest or sum, got {req.reward_aggregation!r}",
            field="rewardAggregation",
        )
    if req.log_retention_days < -1:
        raise InvalidInput(
            f"logRetentionDays must be -1 or more, got {req.log_retention_days}",
            field="logRetentionDays",
        )
    if req.log_mirror_enabled:
        raise InvalidInput(
            "logMirrorEnabled: Loopwise does not mirror its logs to Azure storage; its "
            "decisions, rewards and training examples are Kafka topics a consumer can read",
            field="logMirrorEnabled",
        )
    mode = None
    if req.learning_mode is not None:
        if req.learning_mode not in MODES:
            raise InvalidInput(
                f"learningMode must be one of {', '.join(MODES)}, got {req.learning_mode!r}",
                field="learningMode",
            )
        mode = MODES[req.learning_mode]
    every = None
    if req.auto_optimization_frequency is not None:
        every = durations.parse(req.auto_optimization_frequency, "autoOptimizationFrequency")

    def edit(body: dict[str, Any]) -> None:
        learning = dict(body.get("learning") or {})
        learning.update(
            reward_wait_seconds=wait, default_reward=req.default_reward, aggregation=aggregation
        )
        body["learning"] = learning
        body["constraints"] = {
            **(body.get("constraints") or {}),
            "exploration_floor": req.exploration_percentage,
        }
        if mode is not None:
            body["mode"] = mode
        if req.is_auto_optimization_enabled:
            seconds = every or float((body.get("optimization") or {}).get("every_seconds", 0))
            seconds = seconds or DEFAULT_OPTIMIZATION
            body["optimization"] = {
                **(body.get("optimization") or {}),
                "every_seconds": seconds,
                "window_seconds": seconds,
                "promote": True,
            }
        elif req.is_auto_optimization_enabled is False:
            body.pop("optimization", None)

    try:
        changed = await run_in_threadpool(st.catalogs.edit, catalog.name, edit, time.time())
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, field=_field(exc.field)) from exc
    saved: dict[str, Any] = {
        "modelExportFrequency": req.model_export_frequency,
        "logRetentionDays": req.log_retention_days,
    }
    if every is not None:
        saved["optimizationSeconds"] = every
    if req.auto_optimization_start_date is not None:
        saved["autoOptimizationStartDate"] = req.auto_optimization_start_date
    if req.model_retrain_days is not None:
        saved["modelRetrainDays"] = req.model_retrain_days
    extras.update(st, catalog.name, **saved)
    return JSONResponse(answer(st, changed))


def _within(value: float, low: float, high: float, field: str) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{field} must be in [{low:g}, {high:g}], got {value!r}", field=field)


def _field(loopwise: str | None) -> str | None:
    """The Personalizer field of a catalog setting a PUT refused."""
    return {
        "learning.reward_wait_seconds": "rewardWaitTime",
        "learning.default_reward": "defaultReward",
        "constraints.exploration_floor": "explorationPercentage",
        "optimization.every_seconds": "autoOptimizationFrequency",
        "optimization.window_seconds": "autoOptimizationFrequency",
    }.get(loopwise or "", loopwise)
