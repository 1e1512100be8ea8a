"""The answers' shapes, for the document only: the routes build their answers as dicts.

A field with a default of `UNSET` may be absent (never null); one typed `... | None` is
always there and may be null. Extra fields are allowed (no `additionalProperties: false`),
so a new field in an answer does not break a client; a missing or mistyped one breaks the
fuzz test (tests/test_openapi_fuzz.py), which checks every answer against these.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

Object = dict[str, Any]


class Ranked(msgspec.Struct):
    id: str
    probability: float


class ArmShown(msgspec.Struct):
    name: str | None
    arm: str
    arm_probability: float


class SlotAnswer(msgspec.Struct):
    """One slot of a slate; a slot left empty has no event id, nothing chosen, a `reason`."""

    slot: str
    event_id: str | None
    ranking: list[Ranked]
    chosen: Ranked | None
    fallback: bool
    fallback_reason: str | UnsetType | None = UNSET
    model_choice: Ranked | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET


class DecideAnswer(msgspec.Struct):
    """A single-slot answer carries `ranking` and `chosen`; a slate carries `slots`."""

    event_id: str
    policy: str | None
    model_version: str
    catalog_version: int
    logged: bool
    removed: dict[str, int]
    ranking: list[Ranked] | UnsetType = UNSET
    chosen: Ranked | UnsetType | None = UNSET
    fallback: bool | UnsetType = UNSET
    fallback_reason: str | UnsetType | None = UNSET
    model_choice: Ranked | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET
    slots: list[SlotAnswer] | UnsetType = UNSET
    deferred: bool | UnsetType = UNSET
    experiment: ArmShown | UnsetType = UNSET
    replay: bool | UnsetType = UNSET  # a repeat of an event id: the answer kept
    removed_ids: dict[str, list[str]] | UnsetType = UNSET  # debug
    features: Object | UnsetType = UNSET  # debug
    action_features: Object | UnsetType = UNSET  # debug


class RewardResult(msgspec.Struct):
    event_id: str
    status: Literal["accepted", "late", "pending", "unknown_event"]
    reward_id: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    warning: str | UnsetType = UNSET


class RewardResults(msgspec.Struct):
    results: list[RewardResult]


class EventsAccepted(msgspec.Struct):
    accepted: int


class StockLevel(msgspec.Struct):
    sku: str
    level: float
    ts: float


class CatalogAction(msgspec.Struct):
    id: str
    features: Object
    metadata: Object


class CatalogShown(msgspec.Struct):
    """A catalog version as stored (what PUT takes back as its body)."""

    name: str
    version: int
    updated_at: float
    actions: list[CatalogAction]
    learning: Object
    constraints: Object
    features: list[Object]  # the user aggregates decisions join
    failover: Object
    mode: Literal["online", "apprentice", "logging"]
    experiment: Object | UnsetType = UNSET
    optimization: Object | UnsetType = UNSET


class CatalogSummary(msgspec.Struct):
    name: str
    version: int
    actions: int
    updated_at: float
    policy: str


class CatalogList(msgspec.Struct):
    catalogs: list[CatalogSummary]


class FailoverShown(msgspec.Struct):
    catalog: str
    settings: Object
    breaker: Object
    model: str
    over_budget: float
    failovers: dict[str, int]


class ExperimentShown(msgspec.Struct):
    name: str
    seed: int
    control: str
    alpha: float
    reward_range: list[float]
    arms: list[Object]
    catalog_version: int
    stopped: Any


class ModeShown(msgspec.Struct):
    catalog: str
    mode: Literal["online", "apprentice", "logging"]
    version: int


class ApprenticeShown(msgspec.Struct):
    catalog: str
    mode: Literal["online", "apprentice", "logging"]
    report: Any


class EvaluationStarted(msgspec.Struct):
    id: str
    state: str
    location: str


class EvaluationStatus(msgspec.Struct):
    """The job's spec, then its progress (`state`), then its estimates."""

    id: str
    catalog: str
    kind: Literal["evaluation", "optimize"]
    since: float
    until: float
    candidates: Any
    state: str | UnsetType = UNSET


class EvaluationList(msgspec.Struct):
    evaluations: list[EvaluationStatus]


class ModelShown(msgspec.Struct):
    catalog: str
    catalog_version: int
    policy: str
    model_version: str
    generation: int
    learned: int
    replica: dict[str, int]
    freshness_seconds: dict[str, float]
    caught_up: bool


class EventShown(msgspec.Struct):
    event_id: str
    decided: bool
    deferred: bool
    learned: bool


class Activated(msgspec.Struct):
    event_id: str
    status: Literal["activated", "late", "pending", "not_deferred"]
    detail: str | UnsetType = UNSET
    events: list[str] | UnsetType = UNSET  # a slate: its slots' event ids


class UserFeatures(msgspec.Struct):
    user_id: str
    catalog: str | None
    session_id: str | None
    ts: float
    events: int
    last_event_ts: float | None
    sessions: list[Any]
    features: Object


class Erasing(msgspec.Struct):
    user_id: str
    status: Literal["erasing"]
    exposure_records_erased: int


class WhyShown(msgspec.Struct):
    catalog: str
    action: str
    now: Object  # eligible, removed_by, probability, rank, shown_now
    recent: Object


class VersionSummary(msgspec.Struct):
    version: int
    updated_at: float
    actions: int


class VersionList(msgspec.Struct):
    """A page of a catalog's versions, newest first; `next` names the following page."""

    name: str
    latest: int
    versions: list[VersionSummary]
    next: str | None


class VersionShown(msgspec.Struct):
    name: str
    version: int
    updated_at: float
    latest: bool
    body: Object  # as it was stored from: PUT it back (with If-Match) to revert


class Whoami(msgspec.Struct):
    role: Literal["storefront", "marketer", "admin"]
    open: bool  # no keys are configured: every caller may do everything


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, bool]


class PersonalizerEvaluation(msgspec.Struct, rename="camel"):
    """An evaluation in Personalizer's shape: v1.x add `policyResults`, the 2022 preview
    `content`."""

    id: str
    name: str
    start_time: str
    end_time: str
    job_id: str
    status: str
    evaluation_type: Literal["Auto", "Manual"]
    creation_time: str


class PersonalizerModelProperties(msgspec.Struct, rename="camel"):
    creation_time: str
    last_modified_time: str
    learned: int
    model_version: str


class DateRange(msgspec.Struct):
    from_: str = msgspec.field(name="from")
    to: str = ""


class PersonalizerLogProperties(msgspec.Struct, rename="camel"):
    date_range: DateRange


ANSWERS: tuple[type[msgspec.Struct], ...] = (
    DecideAnswer,
    RewardResult,
    RewardResults,
    EventsAccepted,
    StockLevel,
    CatalogShown,
    CatalogList,
    FailoverShown,
    ExperimentShown,
    ModeShown,
    ApprenticeShown,
    EvaluationStarted,
    EvaluationStatus,
    EvaluationList,
    ModelShown,
    EventShown,
    Activated,
    UserFeatures,
    Erasing,
    WhyShown,
    VersionList,
    VersionShown,
    Whoami,
    Health,
    Readiness,
    PersonalizerEvaluation,
    PersonalizerModelProperties,
    PersonalizerLogProperties,
)
