"""Multi-slot decisions (slates) sampled slot by slot with exact conditional probabilities.

Slot k draws from the eligible actions not chosen in slots 0..k-1, not breaking a
diversity limit or a frequency cap once slots 0..k-1 count, and not in slot k's own
`exclude`; its logged probability is the probability of its action *given* the earlier
slots, so the probability of the whole slate is the product over its filled slots. An
action one slot excludes may fill another. A slot with nothing left is left empty (with
the reason) and the later slots are still filled: a slot's own exclusion can empty it
while the next still has candidates.
Diversity (`max_per`: key -> k) allows at most k chosen actions sharing a value of the
key, looked up first in the action's metadata (a list of strings counts each element),
then as a feature name in any namespace (also a flattened list feature `key=value`).
Nothing here replaces a sampled action: a blocked action is excluded before sampling.

May import: the standard library, numpy and engine.*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.actions import Action
from engine.errors import InvalidInput
from engine.sampling import Pmf, Uniform, normalise, sample

PmfForSlot = Callable[[int, Sequence[Action]], Pmf]
# the ids that may no longer be shown once these actions fill the earlier slots (caps)
BlockedAfter = Callable[[Sequence[Action]], Collection[str]]


@dataclass(frozen=True, slots=True)
class SlotChoice:
    slot: int
    action: Action
    probability: float  # conditional on the actions chosen for the earlier slots
    pmf: list[float]  # over `candidates`, as sampled
    candidates: list[str]


def sample_slate(
    n_slots: int,
    eligible: Sequence[Action],
    pmf_for_slot: PmfForSlot,
    rng: Uniform,
    diversity: Mapping[str, int] | None = None,
    blocked_after: BlockedAfter | None = None,
    exclude: Sequence[Collection[str]] = (),
    empty: dict[int, str] | None = None,
) -> list[SlotChoice]:
    """Fill up to `n_slots` slots, one choice per slot that has a candidate left (in slot
    order). `blocked_after` removes what the earlier slots used up of a limit other than
    diversity (frequency caps), before the slot is sampled; `exclude[k]` is what slot k
    may not show. `empty` receives each slot left without a candidate, and why."""
    if n_slots < 1:
        raise InvalidInput(f"slots must be at least 1, got {n_slots}", field="slots")
    if len(exclude) > n_slots:
        raise InvalidInput(f"{len(exclude)} slot exclusions for {n_slots} slots", field="slots")
    limits = dict(diversity or {})
    values = {a.id: diversity_values(a, limits) for a in eligible}
    used: Counter[tuple[str, object]] = Counter()
    chosen: set[str] = set()
    shown: list[Action] = []
    out: list[SlotChoice] = []
    for slot in range(n_slots):
        blocked = blocked_after(shown) if blocked_after is not None and shown else ()
        left = [
            a
            for a in eligible
            if a.id not in chosen and a.id not in blocked and _fits(values[a.id], used, limits)
        ]
        own = exclude[slot] if slot < len(exclude) else ()
        candidates = [a for a in left if a.id not in own] if own else left
        if not candidates:
            if empty is not None:
                empty[slot] = _why_empty(len(left))
            continue
        pmf = _checked(pmf_for_slot(slot, candidates), len(candidates), slot)
        index, probability = sample(pmf, rng)
        action = candidates[index]
        chosen.add(action.id)
        shown.append(action)
        used.update(values[action.id])
        out.append(
            SlotChoice(
                slot=slot,
                action=action,
                probability=probability,
                pmf=[float(p) for p in pmf],
                candidates=[a.id for a in candidates],
            )
        )
    return out


def _why_empty(left: int) -> str:
    if left:
        return (
            f"nothing left for this slot: its exclude removes all {left} actions the earlier "
            "slots, diversity and frequency caps left"
        )
    return (
        "nothing left for this slot: the earlier slots, diversity and frequency caps used "
        "every eligible action"
    )


def diversity_values(action: Action, limits: Mapping[str, int]) -> list[tuple[str, object]]:
    """The (key, value) pairs of `action` that diversity limits count."""
    out: list[tuple[str, object]] = []
    for key in limits:
        out.extend((key, value) for value in _values(action, key))
    return out


def _values(action: Action, key: str) -> list[object]:
    raw = action.metadata.get(key)
    if isinstance(raw, list):
        return list(dict.fromkeys(v for v in raw if isinstance(v, str | int | float)))
    if isinstance(raw, str | int | float):
        return [raw]
    prefix = f"{key}="
    for namespace in action.features.values():
        if key in namespace:
            return [namespace[key]]
        listed = [name[len(prefix) :] for name in namespace if name.startswith(prefix)]
        if listed:
            return list(dict.fromkeys(listed))
    return []


def _fits(
    values: list[tuple[str, object]], used: Counter[tuple[str, object]], limits: Mapping[str, int]
) -> bool:
    return all(used[pair] < limits[pair[0]] for pair in values)


def _checked(pmf: Pmf, size: int, slot: int) -> Pmf:
    """The pmf as it will be sampled (renormalised); refuses a wrong shape or bad weights."""
    array = np.asarray(pmf, dtype=np.float64)
    if array.shape != (size,):
        raise InvalidInput(
            f"the pmf for slot {slot} has shape {array.shape}, expected ({size},)", field="pmf"
        )
    return normalise(array)
