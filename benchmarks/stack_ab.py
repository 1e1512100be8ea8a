"""A/B one setting of the real stack: arms alternate on fresh stacks in the same run.

    python -m benchmarks.stack_ab LOOPWISE_FETCH_WAIT_MS 50 200 --rounds 2

Each arm starts `loopwise up` with the setting, checks the 50x20 decide p99 at 200 req/s
on the fresh stack, grows the broker's log with `--grow` seconds of 350 req/s, and checks
50x20 at 200 req/s and 200x1000 at 50 req/s again, recording every process's CPU. It
prints one JSON line per arm. Not part of the suite: it answers "does this setting help
on this machine?", e.g. the fetch wait and the partition count
(docs/decisions/fetch-wait-and-partitions.md).
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import stack
from benchmarks.decide_latency import WIDE_LIMITS, check_at, decide_requests, prepare, settle
from benchmarks.load import run_load
from benchmarks.shapes import MAIN, WIDE

GROW_RATE = 350.0


def arm(name: str, value: str, grow_seconds: float) -> dict[str, object]:
    with stack({**WIDE_LIMITS, name: value}) as s:
        host, port = s.url.removeprefix("http://").split(":")
        prepare(s.url)
        fresh = check_at(MAIN, host, int(port), 200.0, s)
        run_load(host, int(port), decide_requests(MAIN, host, int(port)), GROW_RATE, grow_seconds)
        settle(s.url, timeout=120.0)
        grown = check_at(MAIN, host, int(port), 200.0, s)
        wide = check_at(WIDE, host, int(port), 50.0, s)
    return {
        name: value,
        "grown_by_decisions": int(GROW_RATE * grow_seconds),
        **{
            label: _brief(check)
            for label, check in (
                ("fresh_50x20", fresh),
                ("grown_50x20", grown),
                ("grown_200x1000", wide),
            )
        },
    }


def _brief(check: dict[str, object]) -> list[dict[str, object]]:
    runs = check["runs"]
    assert isinstance(runs, list)
    return [{"p99_ms": round(float(r["p99_ms"]), 1), "cores": r["cores"]} for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a LOOPWISE_* environment variable")
    parser.add_argument("values", nargs="+", help="one value per arm")
    parser.add_argument("--rounds", type=int, default=2, help="times each arm runs, alternating")
    parser.add_argument(
        "--grow", type=float, default=115.0, help="seconds of load that grow the log"
    )
    args = parser.parse_args()
    for _ in range(args.rounds):
        for value in args.values:
            print(json.dumps(arm(args.name, value, args.grow)), flush=True)


if __name__ == "__main__":  # the load generator spawns processes: guard the entry
    main()
