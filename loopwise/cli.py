"""`loopwise`: run the whole stack, or one part of it, or a simulated storefront."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from engine.errors import EngineError
from streams.children import die_with_parent
from streams.settings import Settings, from_env

log = logging.getLogger("loopwise")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LOOPWISE_DATA_DIR": str(settings.data_dir.resolve()),
            "LOOPWISE_HOST": settings.host,
            "LOOPWISE_PORT": str(settings.port),
            "LOOPWISE_BROKER": settings.broker,
            "LOOPWISE_BROKER_PORT": str(settings.broker_port),
            "LOOPWISE_CATALOGS": ",".join(str(p.resolve()) for p in settings.catalogs),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# -- commands -------------------------------------------------------------------------


def api_command(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app

    settings = settings_from(args)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
    return 0


def worker_command(args: argparse.Namespace) -> int:
    from agents.worker import run

    run(settings_from(args))
    return 0


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

    config = simulate.SimConfig(
        base_url=args.url,
        catalog=args.catalog,
        env=args.env,
        decisions=args.decisions,
        concurrency=args.concurrency,
        seed=args.seed,
        exploration_floor=args.exploration_floor,
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
        title += " under " + simulate.constraint_setup(result)
    path = simulate.plot(result, args.out, title)
    print(simulate.summary(result))
    print(f"plot: {path}")
    return 0


def up_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    stack = Stack(settings)
    started = time.monotonic()
    stack.start()
    try:
        url = f"http://{settings.host}:{settings.port}"
        stack.wait_ready(url, args.timeout)
        print(f"\r{'':<60}\r", end="", file=sys.stderr, flush=True)  # clear the progress line
        print(
            f"Loopwise is up: {url}  (ready in {time.monotonic() - started:.1f} s; "
            f"data in {settings.data_dir.resolve()}; logs in {stack.logs}; Ctrl-C stops)",
            flush=True,
        )
        stack.supervise()
    finally:
        stack.stop()
    return 0


class Stack:
    """The embedded broker, the worker and the API as supervised child processes."""

    def __init__(self, settings: Settings) -> None:
        from streams.broker import EmbeddedBroker

        self.settings = settings
        self.logs = settings.data_dir / "logs"
        self.broker = (
            EmbeddedBroker(settings.broker_port, self.logs / "broker.log", settings.broker_nice)
            if settings.embedded
            else None
        )
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.broker is not None:
            self.broker.start()
        for name in ("worker", "api"):
            self.spawn(name)
        # Both stop us, even where SIGINT came in ignored (a background job of a script
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it).
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def spawn(self, name: str) -> None:
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "loopwise.cli", name],
            env=child_env(self.settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # safe: `up` starts no threads
            process_group=0,  # a terminal's Ctrl-C reaches `up` alone; it stops us in order
        )
        out.close()

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "starting"
        while time.monotonic() < deadline:
            for name, child in self.children.items():
                if child.poll() is not None:
                    raise StackFailed(
                        f"the {name} exited with {child.returncode}; "
                        f"see {self.logs / (name + '.log')}"
                    )
            try:
                r = httpx.get(f"{url}/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
                waiting = [k for k, ok in r.json().get("checks", {}).items() if not ok]
                last = "waiting for " + ", ".join(waiting)
            except httpx.HTTPError:
                last = "waiting for the API to listen"
            print(f"\r{last:<60}", end="", file=sys.stderr, flush=True)
            time.sleep(0.25)
        raise StackFailed(f"not ready within {timeout:g} s ({last}); see {self.logs}")

    def supervise(self) -> None:
        restarts: dict[str, float] = {}
        while not self.stopping:
            time.sleep(0.5)
            for name, child in list(self.children.items()):
                if child.poll() is not None and not self.stopping:
                    log.warning("%s exited with %s; restarting", name, child.returncode)
                    if time.monotonic() - restarts.get(name, 0.0) < 5.0:
                        time.sleep(2.0)
                    restarts[name] = time.monotonic()
                    self.spawn(name)
            if self.broker and self.broker.process and self.broker.process.poll() is not None:
                raise StackFailed(f"the broker exited; see {self.logs / 'broker.log'}")

    def stop(self) -> None:
        """Stop the API and the worker together (each drains and checkpoints), then the
        broker; a child that takes longer than 15 s is killed."""
        self.stopping = True
        running = [c for c in self.children.values() if c.poll() is None]
        for child in running:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for child in running:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.broker is not None:
            self.broker.stop()

    def _on_signal(self, signum: int, frame: object) -> None:
        raise KeyboardInterrupt


class StackFailed(EngineError):
    """A part of the stack did not start or died."""


if __name__ == "__main__":
    sys.exit(main())
