"""The object store's process (`python -m streams.objectstore --port N`): serves the S3
calls on 127.0.0.1 and runs the cleaner every `--clean-seconds`, writing the store's counts
to `--stats` after each pass; SIGTERM or SIGINT stops it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

import streams.objectstore
from streams.objectstore.s3 import S3
from streams.objectstore.store import Store


async def serve(port: int, clean_seconds: float, stats_path: str | None) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: S3(store), "127.0.0.1", port, backlog=128)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"object store listening on 127.0.0.1:{port}", flush=True)
    async with server:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), clean_seconds)
            removed = store.clean()
            if stats_path:
                _write_stats(stats_path, store.stats() | {"removed_last_pass": removed})


def _write_stats(path: str, stats: dict[str, object]) -> None:
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats | {"ts": int(time.time())}, f)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m streams.objectstore", description=streams.objectstore.__doc__
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clean-seconds", type=float, default=1.0)
    parser.add_argument("--stats", help="write the store's counts here after each pass")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.clean_seconds, args.stats))


if __name__ == "__main__":
    main()
