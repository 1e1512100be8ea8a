"""`python -m benchmarks [names...] [--quick] [--out DIR]`: run benchmarks, write results.json.

Every benchmark runs its baseline beside its subject in the same run and reports ratios,
because the machine is shared and absolute timings move by 30-50%. `--quick` is a smoke
mode for CI: tiny sizes, everything exercised, no timing asserted anywhere.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import machine

NAMES = (
    "quality",
    "cost",
    "freshness",
    "decide_latency",
    "learning_throughput",
    "constraints",
    "features",
    "broker",
    "soak",
    "ope",
    "experiments",
    "optimize",
    "personalizer_latency",
    "personalizer_storefront",
)
OFFLINE = ("quality", "cost", "constraints", "ope", "optimize")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(NAMES)}, offline")
    parser.add_argument("--quick", action="store_true", help="short smoke mode, no timing checks")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    names: list[str] = []
    for name in args.names or NAMES:
        if name not in (*NAMES, "offline"):
            parser.error(f"unknown benchmark {name!r}; expected any of {', '.join(NAMES)}, offline")
        names += list(OFFLINE) if name == "offline" else [name]
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks", *(argv or sys.argv[1:])])
    results: dict[str, object] = {
        "machine": machine(),
        "command": command,
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "benchmarks": _kept(args.out / "results.json", args.quick, names),
    }
    failed = 0
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name} ==", flush=True)
        started = time.monotonic()
        try:
            result = module.run(args.quick, args.out)
        except Exception as exc:  # one failing benchmark must not lose the others' numbers
            failed += 1
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.monotonic() - started, 1)
        result["run"] = {"command": command, "started": results["started"]}
        results["benchmarks"][name] = result  # type: ignore[index]
        if "error" not in result:
            print(module.report(result), flush=True)
        print(f"({name}: {result['seconds']} s)\n", flush=True)
        _write(args.out / "results.json", results)
    print(f"results: {args.out / 'results.json'}")
    return 1 if failed else 0


def _kept(path: Path, quick: bool, names: Sequence[str]) -> dict[str, object]:
    """The other benchmarks' latest full results, so that re-running one by name updates
    its entry and keeps the rest (each entry says which run it came from)."""
    if quick or not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("quick") or not isinstance(old.get("benchmarks"), dict):
        return {}
    return {name: entry for name, entry in old["benchmarks"].items() if name not in names}


def _write(path: Path, results: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(results), indent=2, sort_keys=False))
    tmp.replace(path)


def _finite(value: object) -> object:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
