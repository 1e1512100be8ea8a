"""Kill the worker again and again under traffic; count decisions never learned.

    .venv/bin/python scripts/chaos.py --cycles 25 --data /tmp/chaos

Starts its own broker, worker and API (as the stack tests do), decides about 50 times a
second with a reward for every third decision, and each cycle SIGKILLs the worker at a
random moment, restarts it and waits until it consumes again. In the end it waits until
learning stands still and compares what was learned with what was decided; a decision
never learned is traced through the topics. Exit status 1 if any was lost.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.broker import EmbeddedBroker
from tests.conftest import Stack, free_port, trace_events
from tests.test_stack import CATALOG


def traffic(stack: Stack, decided: list[str], stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        try:
            d = stack.decide("chaos", context={"i": i % 7})
        except Exception as exc:  # the API restarts too: keep going
            print(f"decide failed: {exc}", flush=True)
            time.sleep(0.2)
            continue
        decided.append(str(d["event_id"]))
        if i % 3 == 0:
            stack.http.post("/v1/rewards", json={"event_id": d["event_id"], "value": 1.0})
        i += 1
        time.sleep(0.02)


def settle(stack: Stack, decided: int, still_seconds: int = 30, limit: float = 600) -> int:
    """The learned count once it reaches `decided` or stands still for `still_seconds`."""
    last, still, deadline = -1, 0, time.time() + limit
    while time.time() < deadline and still < still_seconds:
        learned = stack.learned("chaos")
        if learned >= decided:
            return learned
        still = still + 1 if learned == last else 0
        last = learned
        time.sleep(1)
    return stack.learned("chaos")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=25)
    parser.add_argument("--data", type=Path, required=True, help="a new directory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=False)
    port = free_port()
    broker = EmbeddedBroker(port, args.data / "broker.log")
    broker.start()
    stack = Stack(
        f"127.0.0.1:{port}",
        args.data,
        LOOPWISE_RETENTION_SECONDS="2",
        LOOPWISE_CHECKPOINT_SECONDS="0.5",
    )
    rng = random.Random(args.seed)
    decided: list[str] = []
    try:
        stack.start()
        stack.wait_worker(0)
        assert stack.http.put("/v1/catalogs/chaos", json=CATALOG).status_code == 201
        for cycle in range(args.cycles):
            stop = threading.Event()
            thread = threading.Thread(target=traffic, args=(stack, decided, stop))
            thread.start()
            time.sleep(rng.uniform(0.2, 2.0))
            stack.worker.stop(signal.SIGKILL)
            time.sleep(rng.uniform(0.0, 1.0))
            since = time.time()
            stack.worker.start()
            stack.wait_worker(since)
            time.sleep(rng.uniform(0.5, 2.0))
            stop.set()
            thread.join()
            print(f"cycle {cycle + 1}/{args.cycles}: {len(decided)} decided", flush=True)
        learned = settle(stack, len(decided))
        print(f"decided {len(decided)}, learned {learned}")
        if learned == len(decided):
            return 0
        lost = [e for e in decided if not stack.http.get(f"/v1/events/{e}").json()["learned"]]
        print(f"never learned: {len(lost)}\n{trace_events(stack, lost)}")
        return 1
    finally:
        stack.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
