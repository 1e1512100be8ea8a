"""api.serving.memory: a soak's diagnosis names the source line whose allocations grew."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from api.serving import memory


def test_the_report_names_the_line_that_grew(tmp_path: Path) -> None:
    out = tmp_path / "logs" / "tracemalloc-api.txt"
    kept: list[bytes] = []

    async def run() -> None:
        task = asyncio.create_task(memory.trace(0.05, out))
        for _ in range(40):
            kept.append(bytes(64_000))  # the growth: 64 KB every 5 ms
            await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    report = out.read_text().splitlines()
    assert "traced" in report[0] and "grew most" in report[0]
    assert "test_memory_trace.py" in report[1], report[:3]  # the biggest growth: ours
    assert len(kept) == 40
