"""Personalizer's request bodies as msgspec Structs, converted once at the edge.

Field names are Personalizer's (camelCase). Unknown fields are ignored, as Personalizer
ignored them (its SDKs send only the fields they model, and the 2022 preview's SDK sends
what the application wrote). Feature objects stay plain dicts here: api.personalizer.features
validates and maps them.
"""

from __future__ import annotations

from typing import Any

import msgspec

FeatureList = list[dict[str, Any]]


class RankableAction(msgspec.Struct, rename="camel", frozen=True):
    id: str
    features: FeatureList | None = None


class RankRequest(msgspec.Struct, rename="camel", frozen=True):
    actions: list[RankableAction]
    context_features: FeatureList | None = None
    excluded_actions: list[str] | None = None
    event_id: str | None = None
    defer_activation: bool = False


class SlotRequest(msgspec.Struct, rename="camel", frozen=True):
    id: str
    baseline_action: str
    features: FeatureList | None = None
    excluded_actions: list[str] | None = None


class MultiSlotRankRequest(msgspec.Struct, rename="camel", frozen=True):
    actions: list[RankableAction]
    slots: list[SlotRequest]
    context_features: FeatureList | None = None
    event_id: str | None = None
    defer_activation: bool = False


class RewardRequest(msgspec.Struct, rename="camel", frozen=True):
    value: float


class SlotReward(msgspec.Struct, rename="camel", frozen=True):
    slot_id: str
    value: float


class MultiSlotRewardRequest(msgspec.Struct, rename="camel", frozen=True):
    reward: list[SlotReward]


class ServiceConfiguration(msgspec.Struct, rename="camel", frozen=True):
    """Required by the spec: rewardWaitTime, defaultReward, rewardAggregation,
    explorationPercentage, modelExportFrequency, logRetentionDays."""

    reward_wait_time: str
    default_reward: float
    reward_aggregation: str
    exploration_percentage: float
    model_export_frequency: str
    log_retention_days: int
    learning_mode: str | None = None
    log_mirror_enabled: bool | None = None
    log_mirror_sas_uri: str | None = None
    is_auto_optimization_enabled: bool | None = None
    auto_optimization_frequency: str | None = None
    auto_optimization_start_date: str | None = None
    model_retrain_days: int | None = None  # 2022-09-01-preview


class PolicyContract(msgspec.Struct, rename="camel", frozen=True):
    name: str
    arguments: str


class EvaluationContract(msgspec.Struct, rename="camel", frozen=True):
    name: str
    start_time: str
    end_time: str
    policies: list[PolicyContract] = msgspec.field(default_factory=list)
    enable_offline_experimentation: bool = False
    enable_policy_optimization: bool = False  # its 2022-09-01-preview name


class PolicyReferenceContract(msgspec.Struct, rename="camel", frozen=True):
    evaluation_id: str
    policy_name: str
