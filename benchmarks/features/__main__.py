"""`python -m benchmarks.features passthrough`: the ingestion baseline's worker process."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.features.ingestion import passthrough_worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.features")
    sub = parser.add_subparsers(required=True, dest="command")
    p = sub.add_parser("passthrough", help="the ingestion baseline: a counting Faust agent")
    p.add_argument("--topic", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    passthrough_worker(args.topic, args.events, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
