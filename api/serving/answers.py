"""A decision's answer, built from the records it was logged as.

The decide route answers with it, and another serving process rebuilds the same answer
from the decisions log when the same request is repeated there (api.serving.peers), so a replay
reads alike whichever process receives it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.records import DecisionLogged, EmptySlotLogged


def answer(event_id: str, records: Sequence[DecisionLogged], logged: bool) -> dict[str, object]:
    """The answer to a decision that showed something: one record, or a slate's records
    in slot order (`position`), each slot left empty in its place among them."""
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
    filled = iter([{"slot": r.slot, "event_id": r.event_id, **_slot(r)} for r in records])
    empty = {e.position: _empty(e) for e in first.empty_slots}
    out["slots"] = [
        empty[k] if k in empty else next(filled) for k in range(len(records) + len(empty))
    ]
    return out


def _empty(e: EmptySlotLogged) -> dict[str, object]:
    """A slot nothing was left for, in its place: no event, nothing shown, and why."""
    return {
        "slot": e.slot,
        "event_id": None,
        "ranking": [],
        "chosen": None,
        "fallback": False,
        "reason": e.reason,
    }


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
