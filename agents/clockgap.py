"""How far the serving processes' clocks are from this worker's, as far as records tell.

The join closes a window by the worker's ticks (agents.joiner) at `decision.ts + wait`,
where `decision.ts` is the API's clock: a worker clock that runs ahead by D closes every
window D early and counts the last D seconds of rewards as late; one that runs behind
holds windows open D longer. Every decision and reward carries its API's `ts`; read at
the worker's time `now`, `now - ts` is the skew plus the delivery delay. Its smallest
value over the last `WINDOW` seconds is exposed (`loopwise_worker_clock_gap_seconds`):
below 0, an API clock is ahead of the worker's by at least that much; well above the
delivery delay while the worker has no consumer lag, the worker's clock is ahead. The
alert rules read it (docs/operations.md#clocks).
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 60  # seconds of records the smallest gap is taken over


class ClockGap:
    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.seconds: deque[tuple[int, float]] = deque()  # (second, the smallest gap in it)

    def observe(self, ts: float, now: float) -> None:
        gap, second = now - ts, int(now)
        if not math.isfinite(gap):
            return
        if self.seconds and self.seconds[-1][0] == second:
            self.seconds[-1] = (second, min(self.seconds[-1][1], gap))
        else:
            self.seconds.append((second, gap))
        while self.seconds and self.seconds[0][0] <= second - self.window:
            self.seconds.popleft()

    def smallest(self, now: float) -> float | None:
        """The smallest gap over the last window, or None without records in it."""
        recent = [g for s, g in self.seconds if s > int(now) - self.window]
        return min(recent) if recent else None
