"""`loopwise`: run the whole stack, or one part of it, or a simulated storefront (or a
tour of experiments on one)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.errors import EngineError
from engine.learning import DEFAULT_FLOOR
from loopwise.supervisor import Stack
from streams import logs
from streams.children import exit_after_parent
from streams.settings import Settings, from_env

log = logging.getLogger("loopwise")
GRACE_SECONDS = 10.0  # how long a part may take to stop once `up` is gone
SERVICES = ("up", "api", "worker", "broker", "evaluate")  # log JSON lines unless told text


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    process = args.run.__name__.removesuffix("_command")
    default = "json" if process in SERVICES else "text"
    form = os.environ.get("LOOPWISE_LOG_FORMAT", default)
    if form not in logs.FORMATS:
        print(f"loopwise: LOOPWISE_LOG_FORMAT must be json or text, got {form!r}", file=sys.stderr)
        return 2
    logs.configure(process, form)
    try:
        return int(args.run(args) or 0)
    except EngineError as exc:
        print(f"loopwise: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopwise", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="command")

    up = sub.add_parser("up", help="start broker (embedded unless --broker), worker and API")
    _common(up)
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for ready")
    up.set_defaults(run=up_command)

    api = sub.add_parser("api", help="run the HTTP API (one uvicorn worker)")
    _common(api)
    api.set_defaults(run=api_command)

    worker = sub.add_parser("worker", help="run the Faust worker (the join agent)")
    _common(worker)
    worker.set_defaults(run=worker_command)

    broker = sub.add_parser("broker", help="run the embedded Tansu broker in the foreground")
    _common(broker)
    broker.set_defaults(run=broker_command)

    evaluate = sub.add_parser(
        "evaluate", help="run one off-policy evaluation job (an API process starts it)"
    )
    evaluate.add_argument("job", type=Path, help="the job's directory, with its spec.json")
    evaluate.set_defaults(run=evaluate_command)

    sim = sub.add_parser("simulate", help="play a simulated storefront against a server")
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument(
        "--env",
        default="segments",
        help="segments | segments50 | intent (the best banner follows what was just viewed)",
    )
    sim.add_argument("--decisions", type=int, default=3000)
    sim.add_argument("--concurrency", type=int, default=8)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--exploration-floor",
        type=float,
        default=0.0,
        help="catalog exploration floor: each banner keeps at least floor/K probability",
    )
    sim.add_argument(
        "--exploration", help="the catalog's exploration algorithm (default: the storefront's)"
    )
    sim.add_argument("--catalog", default="sim")
    sim.add_argument("--api-key", default=os.environ.get("LOOPWISE_SIM_API_KEY"))
    sim.add_argument("--out", type=Path, default=Path("simulation.png"))
    sim.add_argument(
        "--stock",
        type=int,
        help="units per banner; each click buys one, sold-out banners disappear",
    )
    sim.add_argument(
        "--restock-after", type=float, help="seconds after a sell-out to restock (with --stock)"
    )
    sim.add_argument("--cap", type=int, help="at most K exposures per banner per user per hour")
    sim.add_argument(
        "--users", type=int, help="a pool of returning user ids (default with --cap: 200)"
    )
    sim.add_argument(
        "--no-feature-store",
        action="store_true",
        help="the catalog reads no stored features (compare with and without the store)",
    )
    sim.add_argument(
        "--dwell", type=float, default=0.0, help="seconds from a visit's views to its decision"
    )
    sim.set_defaults(run=simulate_command)

    tour = sub.add_parser(
        "tour",
        help="an A/B, an evaluation, apprentice mode and a failover on a simulated storefront",
    )
    tour.add_argument("--url", default="http://127.0.0.1:8000")
    tour.add_argument("--env", default="segments", help="segments | segments50")
    tour.add_argument("--catalog", default="tour")
    tour.add_argument("--seed", type=int, default=0)
    tour.add_argument("--concurrency", type=int, default=8)
    tour.add_argument("--decisions", type=int, default=10_000, help="visitors of the A/B")
    tour.add_argument("--window", type=int, default=500, help="read the results every N")
    tour.add_argument(
        "--exploration-floor", type=float, default=DEFAULT_FLOOR, help="the catalog default"
    )
    tour.add_argument("--apprentice-decisions", type=int, default=2000)
    tour.add_argument("--failover-decisions", type=int, default=200)
    tour.add_argument("--api-key", default=os.environ.get("LOOPWISE_SIM_API_KEY"))
    tour.add_argument("--out", type=Path, default=Path("tour"), help="directory for the results")
    tour.add_argument("--quick", action="store_true", help="a small tour (for tests)")
    tour.set_defaults(run=tour_command)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="RocksDB tables, checkpoints, logs")
    p.add_argument("--host", help="API host (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default 8000)")
    p.add_argument("--broker", help="bootstrap servers host:port[,..]; default: embedded Tansu")
    p.add_argument("--broker-port", type=int, help="port of the embedded broker")
    p.add_argument(
        "--catalog",
        action="append",
        type=Path,
        default=[],
        help="JSON/YAML catalog file to load at start (repeatable)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    settings = from_env()
    changes: dict[str, object] = {}
    for name in ("data_dir", "host", "port", "broker", "broker_port"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "catalog", None):
        changes["catalogs"] = tuple(args.catalog)
    return settings.with_(**changes) if changes else settings


# -- commands -------------------------------------------------------------------------


def api_command(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    settings = settings_from(args)
    exit_after_parent(GRACE_SECONDS)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # uvicorn's loggers go to the root's handler (streams.logs)
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
    return 0


def worker_command(args: argparse.Namespace) -> int:
    from agents.worker import run

    exit_after_parent(GRACE_SECONDS)
    run(settings_from(args))
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from jobs.evaluate import run

    exit_after_parent(GRACE_SECONDS)
    return run(args.job)


def broker_command(args: argparse.Namespace) -> int:
    from streams.broker import EmbeddedBroker

    settings = settings_from(args)
    log = settings.data_dir / "logs" / "broker.log"
    broker = EmbeddedBroker(settings.broker_port, log, settings.broker_nice)
    broker.start()
    print(f"broker listening on 127.0.0.1:{settings.broker_port}", flush=True)
    try:
        while broker.process and broker.process.poll() is None:
            time.sleep(0.5)
    finally:
        broker.stop()
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from sim import simulate
    from sim.config import SimConfig
    from sim.plots import plot
    from sim.report import constraint_setup, summary

    config = SimConfig(
        base_url=args.url,
        catalog=args.catalog,
        env=args.env,
        decisions=args.decisions,
        concurrency=args.concurrency,
        seed=args.seed,
        exploration_floor=args.exploration_floor,
        exploration=args.exploration,
        api_key=args.api_key,
        stock=args.stock,
        restock_after=args.restock_after,
        cap=args.cap,
        users=args.users,
        feature_store=not args.no_feature_store,
        dwell_s=args.dwell,
    )
    result = asyncio.run(simulate.run(config, progress=True))
    title = f"Loopwise on the '{args.env}' storefront"
    if config.constrained:
        title += " under " + constraint_setup(result)
    path = plot(result, args.out, title)
    print(summary(result))
    print(f"plot: {path}")
    return 0


def tour_command(args: argparse.Namespace) -> int:
    import json

    from sim import tour
    from sim.tour_config import TourConfig, quick
    from sim.tour_plot import plot
    from sim.tour_result import summary

    config = TourConfig(
        base_url=args.url,
        catalog=args.catalog,
        env=args.env,
        seed=args.seed,
        concurrency=args.concurrency,
        api_key=args.api_key,
        exploration_floor=args.exploration_floor,
        ab_decisions=args.decisions,
        window=args.window,
        apprentice_decisions=args.apprentice_decisions,
        failover_decisions=args.failover_decisions,
    )
    if args.quick:
        config = quick(config)
    result = asyncio.run(tour.run(config, args.out, progress=True))
    (args.out / "tour.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    path = plot(result, args.out / "tour.png")
    print(summary(result))
    print(f"results: {args.out / 'tour.json'}, {path}, {result.ab.svg}")
    return 0


def up_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    stack = Stack(settings)
    started = time.monotonic()
    stack.start()
    # Both stop us, even where SIGINT came in ignored (a background job of a script
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        stack.wait_ready(args.timeout, _progress)
        print(f"\r{'':<60}\r", end="", file=sys.stderr, flush=True)  # clear the progress line
        print(
            f"Loopwise is up: {stack.url}  (ready in {time.monotonic() - started:.1f} s; "
            f"data in {settings.data_dir.resolve()}; logs in {stack.logs}; Ctrl-C stops)",
            flush=True,
        )
        stack.supervise(_restarting)
    finally:
        stack.stop()
    return 0


def _progress(line: str) -> None:
    print(f"\r{line:<60}", end="", file=sys.stderr, flush=True)


def _restarting(name: str, code: int | None) -> None:
    log.warning("%s exited with %s; restarting", name, code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
