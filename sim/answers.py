"""Reading a decide answer: the chosen action, the ranking, what constraints removed, and
(from `debug`) whether the features used held the visit's own behaviour."""

from __future__ import annotations

import math
from typing import Any

from engine.errors import Unavailable
from sim.storefront import Environment, Visitor

FRESH, STALE, NO_SESSION = "fresh", "stale", "none"


def chosen(decision: dict[str, Any], env: Environment) -> tuple[str, str] | None:
    """(event_id, chosen action id) of a decide response, checked against the env;
    None when the server answered that nothing was eligible ("chosen": null)."""
    chosen = decision.get("chosen")
    event_id = decision.get("event_id")
    if chosen is None and "reason" in decision:
        return None
    action = chosen.get("id") if isinstance(chosen, dict) else None
    if not isinstance(event_id, str) or not isinstance(action, str):
        raise Unavailable(f"POST /v1/decide answered without event_id or chosen.id: {decision}")
    if action not in env.action_ids:
        raise Unavailable(f"POST /v1/decide chose {action!r}, which is not in the catalog")
    return event_id, action


def ranking_probability(decision: dict[str, Any], action_id: str) -> float:
    return ranking(decision).get(action_id, 0.0)


def ranking(decision: dict[str, Any]) -> dict[str, float]:
    """Action id -> probability over the eligible actions of a decide response."""
    ranking = decision.get("ranking")
    if not isinstance(ranking, list):
        raise Unavailable(f"POST /v1/decide answered without a ranking list: {decision}")
    return {
        str(entry["id"]): float(entry.get("probability", 0.0))
        for entry in ranking
        if isinstance(entry, dict) and "id" in entry
    }


def removed(decision: dict[str, Any]) -> dict[str, int]:
    """The response's "removed" counts by reason (absent: nothing removed)."""
    removed = decision.get("removed")
    if not isinstance(removed, dict):
        return {}
    return {
        str(reason): int(n)
        for reason, n in removed.items()
        if isinstance(n, int) and not isinstance(n, bool) and n > 0
    }


def eligible_ctr(
    decision: dict[str, Any], env: Environment, visitor: Visitor
) -> tuple[float, float]:
    """(best, mean) click probability of the visitor over the eligible actions."""
    ctrs = [env.click_probability(visitor, a) for a in ranking(decision) if a in env.action_ids]
    if not ctrs:
        return math.nan, math.nan
    return max(ctrs), math.fsum(ctrs) / len(ctrs)


def seen(decision: dict[str, Any], visitor: Visitor) -> tuple[str, bool]:
    """What of the visitor's behaviour the decision's features held (from `debug`):
    FRESH when the session's event count (the `depth` feature) includes this visit's
    views, STALE when it holds the session without them, else NO_SESSION; and whether
    any stored feature was joined at all."""
    features = decision.get("features")
    if not isinstance(features, dict):
        return NO_SESSION, False
    joined = "user_features" in features or "session_features" in features
    session = features.get("session_features")
    if not isinstance(session, dict) or not session:
        return NO_SESSION, joined
    depth = session.get("depth")
    if isinstance(depth, int | float) and depth >= visitor.session_events:
        return FRESH, joined
    return STALE, joined
