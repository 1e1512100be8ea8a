"""The record of a run in progress: what each visitor's decision did (`Outcome`), and the
`Tally` the concurrent workers share (which decision is next, and every outcome so far)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from sim.answers import FRESH


@dataclass(frozen=True)
class Outcome:
    """What one visitor's decision did."""

    clicked: bool
    shown: bool = True
    removed: Mapping[str, int] = field(default_factory=dict)
    best: float = math.nan  # best click probability among the eligible actions
    mean: float = math.nan  # their average click probability (uniform among the eligible)
    p_click: float = math.nan  # the click model's probability for the banner shown
    seen: str | None = None  # with behaviour: FRESH, STALE or NO_SESSION
    joined: bool = False  # with behaviour: the features held anything from the store
    segment: str | None = None  # the visitor's segment (or intent)
    served_best: bool = False  # the banner shown was the segment's best


NOT_SHOWN = Outcome(clicked=False, shown=False)


@dataclass
class Tally:
    """Shared by the workers: which decision is next and what happened so far."""

    total: int
    clicked: list[bool] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)
    removed: list[Mapping[str, int]] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    event_latencies_ms: list[float] = field(default_factory=list)
    seen: list[str | None] = field(default_factory=list)
    p_click: list[float] = field(default_factory=list)
    segment: list[str | None] = field(default_factory=list)
    served_best: list[bool] = field(default_factory=list)
    joined: int = 0
    fresh: int = 0
    events_posted: int = 0
    next_index: int = 0
    done: int = 0
    clicks: int = 0
    nothing_eligible: int = 0

    def __post_init__(self) -> None:
        self.clicked = [False] * self.total
        self.shown = [False] * self.total
        self.removed = [{} for _ in range(self.total)]
        self.best = [math.nan] * self.total
        self.mean = [math.nan] * self.total
        self.seen = [None] * self.total
        self.p_click = [math.nan] * self.total
        self.segment = [None] * self.total
        self.served_best = [False] * self.total

    def claim(self) -> int | None:
        if self.next_index >= self.total:
            return None
        self.next_index += 1
        return self.next_index - 1

    def record(self, index: int, outcome: Outcome) -> None:
        self.clicked[index] = outcome.clicked
        self.shown[index] = outcome.shown
        self.removed[index] = outcome.removed
        self.best[index] = outcome.best
        self.mean[index] = outcome.mean
        self.seen[index] = outcome.seen
        self.p_click[index] = outcome.p_click
        self.segment[index] = outcome.segment
        self.served_best[index] = outcome.served_best
        self.joined += int(outcome.joined)
        self.fresh += int(outcome.seen == FRESH)
        self.done += 1
        self.clicks += int(outcome.clicked)
        self.nothing_eligible += int(not outcome.shown)

    def ctr(self) -> float:
        """Clicks per banner shown (every decision shows one unless constraints remove all)."""
        shown = self.done - self.nothing_eligible
        return self.clicks / shown if shown else 0.0
