"""One decision, single- or multi-slot: constraints, then the policy, then sampling.

The order is the invariant: constraints remove actions *before* the policy sees them;
pin, boost and the exploration floor shape the policy's pmf *before* sampling; sampling
draws with exact probabilities; nothing replaces a sampled action afterwards. A
multi-slot decision samples slot after slot, each from what the slots before it left
(no action twice; diversity limits and frequency caps count the earlier slots), and logs
each slot's probability conditional on the slots before it. A slot may exclude actions
of its own (`Slot.exclude`, on top of the request's); a slot left with nothing is empty
(`Decision.empty`, with the reason) and the later slots are still filled. The position is a context
feature (namespace `slot`), so the default context x action interaction learns position
effects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from engine.actions import Action
from engine.adjust import adjust
from engine.caps import capped_by_slate
from engine.catalog import Catalog
from engine.constraints import Eligibility, apply, fallback, fallback_reason
from engine.features import Features, merge
from engine.policy import UNIFORM, Ranker, Scored, scored
from engine.sampling import Pmf, ranking, rng_for, sample
from engine.slates import BlockedAfter, sample_slate


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    features: Features
    exclude: frozenset[str] = frozenset()  # what this slot may not show (others may)


@dataclass(frozen=True, slots=True)
class EmptySlot:
    """A slot of a slate that nothing was left for: not shown, not logged, not learned."""

    slot: Slot
    position: int  # its place among the slots asked for, from 0
    reason: str


@dataclass(frozen=True, slots=True)
class SlotDecision:
    slot: Slot | None
    event_id: str
    context: Features
    actions: list[Action]
    pmf: Pmf
    chosen: int
    probability: float
    policy: str
    fallback: bool  # shown by a fallback: nothing was eligible, or the model did not answer
    scores: Pmf | None = None  # the policy's, ordering actions of equal probability
    fallback_reason: str | None = None  # why, when `fallback`
    # apprentice and logging modes: the model's own draw, shown or not, and its probability
    model_choice: str | None = None
    model_probability: float = 0.0

    def ranking(self) -> list[int]:
        return ranking(self.pmf, self.scores)


@dataclass(frozen=True, slots=True)
class Decision:
    slots: list[SlotDecision]
    removed: dict[str, list[str]]
    reason: str | None = None  # why nothing is shown, when nothing is
    failures: list[Failure] = field(default_factory=list)  # why the model did not answer
    empty: list[EmptySlot] = field(default_factory=list)  # a slate's slots left empty


@dataclass(frozen=True, slots=True)
class Failure:
    cause: str  # error, breaker_open, forced, not_loaded (engine.policy.Scored.cause)
    detail: str

    @classmethod
    def of(cls, s: Scored) -> Failure | None:
        return cls(s.cause or "error", s.failure) if s.failure is not None else None


def decide(
    catalog: Catalog,
    offered: Sequence[Action],
    context: Features,
    event_id: str,
    now: float,
    policy: Ranker,
    *,
    exposures: Mapping[str, Sequence[float]] | None = None,
    stock: Mapping[str, float] | None = None,
    slots: Sequence[Slot] | None = None,
    safe: Ranker = UNIFORM,
    baseline: str | None = None,
) -> Decision:
    """`policy` decides; `safe` when it cannot (engine.policy.scored). With a `baseline`
    (apprentice and logging modes, single slot) the baseline is shown with probability 1
    when eligible, and the policy's own draw is kept beside it."""
    constraints = catalog.constraints
    allowed = apply(
        constraints, offered, context, now, exposures, stock or {}, catalog_actions=catalog.actions
    )
    if not allowed.actions:
        return _nothing_eligible(catalog, context, event_id, allowed.removed)
    if slots is None:
        s = scored(policy, context, allowed.actions, safe)
        pmf = adjust(s.pmf, allowed.actions, constraints)
        chosen, p = sample(pmf, rng_for(event_id))
        failure = Failure.of(s)
        if baseline is not None:
            return _apprentice(allowed, context, event_id, baseline, s, (chosen, p), safe)
        one = SlotDecision(
            None,
            event_id,
            context,
            allowed.actions,
            pmf,
            chosen,
            p,
            s.policy,
            failure is not None,
            s.scores,
            s.failure,
        )
        return Decision([one], allowed.removed, failures=[failure] if failure else [])
    blocked_after = partial(capped_by_slate, constraints.caps, catalog.actions, now, exposures)
    answers: dict[int, Scored] = {}
    left_empty: dict[int, str] = {}
    chosen_slots = _slate(
        catalog,
        allowed.actions,
        context,
        event_id,
        (policy, safe),
        slots,
        blocked_after,
        (answers, left_empty),
    )
    failures = [f for f in map(Failure.of, answers.values()) if f is not None]
    empty = [EmptySlot(slots[k], k, why) for k, why in sorted(left_empty.items())]
    reason = f"no slot could be filled: {empty[0].reason}" if not chosen_slots else None
    return Decision(chosen_slots, allowed.removed, reason, failures, empty)


def _apprentice(
    allowed: Eligibility,
    context: Features,
    event_id: str,
    baseline: str,
    s: Scored,
    draw: tuple[int, float],
    safe: Ranker,
) -> Decision:
    """Show the storefront's own choice; keep what the policy would have shown. A
    baseline the constraints removed is not shown: the safe policy decides instead."""
    actions = allowed.actions
    ids = [a.id for a in actions]
    model_choice, model_p = ids[draw[0]], draw[1]
    failures = [f for f in [Failure.of(s)] if f is not None]
    if baseline in ids:
        shown, policy, reason = ids.index(baseline), "baseline", None
    else:
        removed = next((r for r, gone in allowed.removed.items() if baseline in gone), "?")
        reason = f"baseline {baseline!r} is not eligible ({removed}): the safe policy decided"
        pmf_safe = scored(safe, context, actions).pmf
        shown, p = sample(pmf_safe, rng_for(event_id, "baseline"))
        one = SlotDecision(
            None, event_id, context, actions, pmf_safe, shown, p,
            safe.name, True, None, reason, model_choice, model_p,
        )  # fmt: skip
        return Decision([one], allowed.removed, failures=failures)
    pmf = np.zeros(len(actions))
    pmf[shown] = 1.0
    one = SlotDecision(
        None, event_id, context, actions, pmf, shown, 1.0, policy, False, None, reason,
        model_choice, model_p,
    )  # fmt: skip
    return Decision([one], allowed.removed, failures=failures)


def slot_event_id(event_id: str, slot: Slot) -> str:
    return f"{event_id}/{slot.id}"


def _slate(
    catalog: Catalog,
    actions: list[Action],
    context: Features,
    event_id: str,
    policies: tuple[Ranker, Ranker],  # the policy, and the safe policy
    slots: Sequence[Slot],
    blocked_after: BlockedAfter,
    out_params: tuple[dict[int, Scored], dict[int, str]],
) -> list[SlotDecision]:
    """The slate's filled slots; `out_params` receive the policy's answer per slot and
    why each slot left empty is."""
    answers, left_empty = out_params
    contexts = [
        merge(context, {"slot": {"position": float(k), "id": s.id}}, s.features)
        for k, s in enumerate(slots)
    ]

    def pmf_for(k: int, candidates: Sequence[Action]) -> Pmf:
        answers[k] = scored(policies[0], contexts[k], candidates, policies[1])
        return adjust(answers[k].pmf, candidates, catalog.constraints)

    choices = sample_slate(
        len(slots),
        actions,
        pmf_for,
        rng_for(event_id),
        catalog.constraints.diversity,
        blocked_after,
        [s.exclude for s in slots],
        left_empty,
    )
    out = []
    for c in choices:
        candidates = [catalog.action(a) for a in c.candidates]
        out.append(
            SlotDecision(
                slots[c.slot],
                slot_event_id(event_id, slots[c.slot]),
                contexts[c.slot],
                candidates,
                np.asarray(c.pmf),
                candidates.index(c.action),
                c.probability,
                answers[c.slot].policy,
                answers[c.slot].failure is not None,
                answers[c.slot].scores,
                answers[c.slot].failure,
            )
        )
    return out


def _nothing_eligible(
    catalog: Catalog, context: Features, event_id: str, removed: dict[str, list[str]]
) -> Decision:
    action = fallback(catalog.constraints, catalog.actions)
    if action is None:
        return Decision([], removed, fallback_reason(catalog.constraints))
    why = "nothing is eligible: the catalog's fallback action"
    one = SlotDecision(
        None, event_id, context, [action], np.ones(1), 0, 1.0, "fallback", True, None, why
    )
    return Decision([one], removed)
