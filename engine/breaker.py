"""The circuit breaker between a catalog's model and its decisions.

A model answer is bad when the model raised or answered over the catalog's latency budget.
After `trip_after` bad answers in a row the breaker opens: for `cooldown_seconds` the
model is not asked at all and the safe policy answers (engine.failover). Then one
decision tries the model again (half open): a good answer closes the breaker, a bad one
opens it for another cooldown. An operator can hold it open (`force`) and close it
(`reset`), each one call.

A Python call cannot be preempted, so an answer over budget is still used (its time is
spent); the budget protects the decisions after it. Time comes from the caller
(monotonic seconds), so every transition is a pure function of the calls made.

May import: the standard library and engine.errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import EngineError

CLOSED, OPEN, HALF_OPEN, FORCED = "closed", "open", "half_open", "forced"


class Unavailable(EngineError):
    """The model is not asked or cannot answer; `cause` names why (a metric label)."""

    status = 503
    title = "Model unavailable"

    def __init__(self, detail: str, *, cause: str) -> None:
        super().__init__(detail)
        self.cause = cause


@dataclass
class Breaker:
    trip_after: int
    cooldown_seconds: float
    state: str = CLOSED
    bad_in_row: int = 0
    opened_at: float | None = None
    reason: str | None = None  # the bad answer, or the operator's reason, that opened it
    trips: int = 0  # times it opened by itself

    @property
    def is_open(self) -> bool:
        return self.state in (OPEN, FORCED)

    def check(self, now: float) -> None:
        """Raise Unavailable unless the model may be asked now."""
        if self.state == FORCED:
            raise Unavailable(f"failover forced by an operator: {self.reason}", cause="forced")
        if self.state == OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.cooldown_seconds:
                raise Unavailable(
                    f"breaker open since {self.bad_in_row} bad answers in a row; last: "
                    f"{self.reason}",
                    cause="breaker_open",
                )
            self.state = HALF_OPEN  # this decision tries the model once

    def good(self) -> None:
        if self.state in (HALF_OPEN, CLOSED):
            self.state, self.bad_in_row, self.reason = CLOSED, 0, None

    def bad(self, reason: str, now: float) -> None:
        if self.state == FORCED:
            return
        self.bad_in_row += 1
        self.reason = reason
        if self.state == HALF_OPEN or self.bad_in_row >= self.trip_after:
            self.state, self.opened_at = OPEN, now
            self.trips += 1

    def force(self, reason: str, now: float) -> None:
        self.state, self.reason, self.opened_at = FORCED, reason, now

    def reset(self) -> None:
        self.state, self.bad_in_row, self.reason, self.opened_at = CLOSED, 0, None, None

    def to_json(self, now: float) -> dict[str, object]:
        out: dict[str, object] = {
            "state": self.state,
            "bad_in_row": self.bad_in_row,
            "trips": self.trips,
            "reason": self.reason,
        }
        if self.opened_at is not None and self.state in (OPEN, FORCED):
            out["open_for_seconds"] = round(now - self.opened_at, 3)
        if self.state == OPEN and self.opened_at is not None:
            out["retry_in_seconds"] = round(
                max(0.0, self.cooldown_seconds - (now - self.opened_at)), 3
            )
        return out
