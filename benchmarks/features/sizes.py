"""The sizes of a features run (`QUICK` for the smoke mode, `FULL`) and the two catalog
shapes it decides with; every catalog has a one-hour reward window, so nothing is learned
while a run measures."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.shapes import Shape

NARROW, WIDE = Shape(50, 20), Shape(50, 1000)
WAIT_SECONDS = 3600.0  # reward window of every catalog here: nothing is learned meanwhile


@dataclass(frozen=True)
class Sizes:
    fresh_events: int
    ingest_events: int
    ingest_users: int
    ingest_rounds: int
    rates: tuple[float, ...]
    load_seconds: float
    rich_users: int
    join_rate: float
    join_rounds: int
    join_calls: int
    together: bool  # both ingestion workers at once: quicker, but they share the CPU


QUICK = Sizes(5, 1500, 300, 1, (20.0,), 0.5, 2, 20.0, 1, 50, True)
FULL = Sizes(200, 60_000, 10_000, 2, (50.0, 100.0, 200.0), 5.0, 20, 100.0, 2, 3000, False)
