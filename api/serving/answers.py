"""A decision's answer, built from the records it was logged as.

The decide route answers with it, and another serving process rebuilds the same answer
from the decisions log when the same request is repeated there (api.serving.peers), so a replay
reads alike whichever process receives it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.records import DecisionLogged


def answer(event_id: str, records: Sequence[DecisionLogged], logged: bool) -> dict[str, object]:
    """The answer to a decision that showed something: one record, or a slate's records
    in slot order (`position`)."""
    first = records[0]
    out: dict[str, object] = {
        "event_id": event_id,
        "policy": first.policy,
        "model_version": first.model_version,
        "catalog_version": first.catalog_version,
        "logged": logged,
        "removed": dict(first.removed),
    }
    if first.deferred:  # learned only once activated
        out["deferred"] = True
    if first.arm is not None:
        out["experiment"] = {
            "name": first.experiment,
            "arm": first.arm,
            "arm_probability": first.arm_probability,
        }
    if first.slot is None:
        out.update(_slot(first))
        return out
    out["slots"] = [{"slot": r.slot, "event_id": r.event_id, **_slot(r)} for r in records]
    return out


def _slot(r: DecisionLogged) -> dict[str, object]:
    out: dict[str, object] = {
        "ranking": [{"id": r.eligible[i], "probability": r.pmf[i]} for i in r.ranking],
        "chosen": {"id": r.eligible[r.chosen], "probability": r.probability},
        "fallback": r.fallback,
    }
    if r.fallback:
        out["fallback_reason"] = r.fallback_reason
    if r.model_choice is not None:  # apprentice and logging modes
        out["model_choice"] = {"id": r.model_choice, "probability": r.model_probability}
    return out
