"""Where a serving process's Python memory grows: tracemalloc snapshots compared over time.

Off by default (`LOOPWISE_TRACEMALLOC_SECONDS=0`). When set, the process traces its
Python allocations (one frame each: allocation is slower and the traces take memory of
their own) and every that many seconds writes `<data dir>/logs/tracemalloc-api.txt`: the
traced total and the 30 source lines whose allocations grew most since the first
snapshot, taken one interval after start so that start-up is not counted. Taking a
snapshot holds the event loop for as long as it takes (seconds on a large heap): for
soaks (`python -m benchmarks.soak --tracemalloc 300`), not for production. Native memory
(VW's, RocksDB's, malloc's free lists) is not traced: RSS growth beyond the traced growth
is native.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

from streams.files import write_atomic

TOP = 30


async def trace(every: float, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(1)
    try:
        await asyncio.sleep(every)
        first, since = _snapshot(), time.time()
        while True:
            await asyncio.sleep(every)
            grown = _snapshot().compare_to(first, "lineno")[:TOP]
            current, peak = tracemalloc.get_traced_memory()
            head = (
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: traced "
                f"{current / 2**20:.1f} MB (peak {peak / 2**20:.1f} MB); the {TOP} lines "
                f"whose allocations grew most in the {time.time() - since:.0f} s since the "
                "first snapshot:"
            )
            write_atomic(out, "\n".join([head, *(str(s) for s in grown), ""]).encode())
    finally:
        tracemalloc.stop()


def _snapshot() -> tracemalloc.Snapshot:
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
