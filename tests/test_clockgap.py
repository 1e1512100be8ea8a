"""agents.clockgap: the smallest (worker time - API ts) over the last minute of records."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.clockgap import WINDOW, ClockGap


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.floats(-400.0, 400.0)),  # (time step, gap)
        min_size=1,
        max_size=300,
    )
)
def test_the_smallest_gap_is_the_minimum_over_the_records_of_the_last_window(
    steps: list[tuple[float, float]],
) -> None:
    clock, now, seen = ClockGap(), 1_796_000_000.0, []
    for step, gap in steps:
        now += step
        clock.observe(now - gap, now)
        seen.append((now, gap))
        recent = [g for t, g in seen if int(t) > int(now) - WINDOW]
        assert clock.smallest(now) == pytest.approx(min(recent), abs=1e-5)  # ts round trip
    assert len(clock.seconds) <= WINDOW + 1, "one entry per second of the window at most"


def test_an_api_clock_five_minutes_ahead_reads_as_a_negative_gap() -> None:
    clock, now = ClockGap(), 1_796_000_000.0
    for i in range(100):
        clock.observe(now + i * 0.1 + 300.0 - 0.02, now + i * 0.1)  # 20 ms to deliver
    assert (
        clock.smallest(now + 10) == -300.0 + 0.02 or abs(clock.smallest(now + 10) + 299.98) < 1e-6
    )
    assert clock.smallest(now + WINDOW + 11) is None, "nothing read in the last minute"
