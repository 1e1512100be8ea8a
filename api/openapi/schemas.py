"""The document's components: the Structs the routes parse and the answers' Structs, as
msgspec renders them (JSON Schema 2020-12), with the configured limits added (`limits`),
and the bodies the engine validates as plain objects (`bodies`)."""

from __future__ import annotations

from typing import Any

import msgspec

from api import requests
from api.openapi import answers, bodies, limits, problems
from api.personalizer import bodies as personalizer
from engine.limits import Limits

REF = "#/components/schemas/{name}"
PERSONALIZER_PREFIX = "Personalizer"
REQUESTS: tuple[Any, ...] = (
    requests.DecideRequest,
    requests.RewardRequest,
    requests.RewardBatch,
    requests.Event,
    requests.EventBatch,
    requests.FailoverRequest,
    requests.ModeChange,
    requests.ArmChange,
    requests.WhyRequest,
)
PERSONALIZER: tuple[Any, ...] = (
    personalizer.RankRequest,
    personalizer.MultiSlotRankRequest,
    personalizer.RewardRequest,
    personalizer.MultiSlotRewardRequest,
    personalizer.ServiceConfiguration,
    personalizer.PolicyContract,
    personalizer.EvaluationContract,
    personalizer.PolicyReferenceContract,
)


def components(bounds: Limits) -> dict[str, Any]:
    """Every schema of the document, by name, within `bounds`."""
    _, found = msgspec.json.schema_components((*REQUESTS, *answers.ANSWERS), ref_template=REF)
    found.update(_personalizer())
    found["Event"] = {
        "title": "Event",
        "description": "An inventory update or a behaviour event, by its `type`.",
        **msgspec.json.schema(requests.Event, ref_template=REF),
    }
    found["Problem"] = problems.problem_schema()
    found.update(bodies.schemas(bounds))
    limits.constrain(found, bounds)
    return dict(sorted(found.items()))


def _personalizer() -> dict[str, Any]:
    """Personalizer's bodies, named with a prefix (two of their names are the /v1 API's)."""
    template = "#/components/schemas/" + PERSONALIZER_PREFIX + "{name}"
    _, found = msgspec.json.schema_components(PERSONALIZER, ref_template=template)
    return {PERSONALIZER_PREFIX + name: schema for name, schema in found.items()}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}
