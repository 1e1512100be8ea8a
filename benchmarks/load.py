"""An open-loop HTTP/1.1 load generator, run in its own process.

Request i is scheduled at t0 + i / rate whatever happened before it, and its latency is
measured from that scheduled time (so a slow server cannot slow the generator down and
hide its own queueing: no coordinated omission). Requests go over a pool of keep-alive
raw sockets; bodies are pre-encoded, responses parsed only as far as Content-Length.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    rate: float
    sent: int
    ok: int
    errors: int
    latencies: list[float]  # seconds from scheduled time to the full response, ok ones
    elapsed: float


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _open_loop(
    host: str, port: int, requests: list[bytes], rate: float, duration: float, connections: int
) -> LoadResult:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    errors = 0
    total = max(1, int(rate * duration))

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        try:
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if head[9:10] == b"2":  # any success (Personalizer's rank answers 201)
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        pool.put_nowait((reader, writer))

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate
        # uvloop's timers have millisecond granularity and may fire early: sleep until the
        # scheduled time has really come, so no request leaves early and reads as faster
        while (delay := scheduled - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30.0)
    except TimeoutError:
        errors += sum(1 for t in tasks if not t.done())
    elapsed = time.perf_counter() - t0
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return LoadResult(rate, total, len(latencies), errors, latencies, elapsed)


def _child(args: tuple[str, int, list[bytes], float, float, int], conn: object) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_open_loop(*args))
    conn.send(result)  # type: ignore[attr-defined]  # a multiprocessing Connection


def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    rate: float,
    duration: float,
    connections: int = 32,
) -> LoadResult:
    """One open-loop run at `rate` req/s for `duration` s, in a separate process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_child, args=((host, port, requests, rate, duration, connections), child)
    )
    process.start()
    try:
        if not parent.poll(duration + 90.0):
            raise RuntimeError(f"the load generator gave no result at {rate} req/s")
        result: LoadResult = parent.recv()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    return result
