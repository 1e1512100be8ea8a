"""Loopwise's processes as supervised children: started, watched, stopped in order.

`loopwise up` runs the embedded broker, the worker and the API through a `Stack`; the
tests run their worker and API processes (against their session's broker) through the
same `Stack` and `Child`, and the benchmarks run `loopwise up` itself. So every one of
them starts, restarts and stops the processes the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

import httpx

from engine.errors import EngineError
from streams.broker import EmbeddedBroker
from streams.children import SUPERVISED, die_with_parent
from streams.settings import Settings

PARTS = ("worker", "api")


class StackFailed(EngineError):
    """A part of the stack did not start or died."""


class Child:
    """`python -m loopwise.cli <command>` with an environment, logging to a file.

    `supervised`: it dies with its parent (PR_SET_PDEATHSIG, set between fork and exec, so
    only for a parent that starts no threads) and runs in a process group of its own, so a
    terminal's Ctrl-C reaches the supervisor alone, which stops the children in order."""

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        log: Path,
        *,
        cwd: Path | None = None,
        supervised: bool = False,
    ) -> None:
        self.command, self.log, self.cwd = command, log, cwd
        self.env = dict(env) | ({SUPERVISED: "1"} if supervised else {})
        self.supervised = supervised
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loopwise.cli", *self.command.split()],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                preexec_fn=die_with_parent if self.supervised else None,
                process_group=0 if self.supervised else None,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exited(self) -> bool:
        """Started, and no longer running."""
        return self.process is not None and self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def send(self, sig: int) -> None:
        if self.running:
            assert self.process is not None  # running says so
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        """Whether it exited within `timeout` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Ask it to stop with `sig` (it drains and checkpoints); kill it after `timeout`."""
        self.send(sig)
        if not self.wait(timeout):
            self.kill()

    def kill(self) -> None:
        if self.running:
            assert self.process is not None  # running says so
            self.process.kill()
        self.wait(30.0)

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def child_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a part runs with: this one's, the settings the supervisor was given
    (they may have come from the command line), and `extra`."""
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
    env.update(extra or {})
    return env


class Stack:
    """The worker and the API as supervised children, and the embedded broker when the
    settings name none. Logs go to `<data dir>/logs/<part>.log`."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        supervised: bool = True,
    ) -> None:
        self.settings = settings
        self.logs = settings.data_dir / "logs"
        self.url = f"http://{settings.host}:{settings.port}"
        self.embedded = (
            EmbeddedBroker(settings.broker_port, self.logs / "broker.log", settings.broker_nice)
            if settings.embedded
            else None
        )
        environment = child_env(settings, env)
        self.children = {
            name: Child(
                name, environment, self.logs / f"{name}.log", cwd=cwd, supervised=supervised
            )
            for name in PARTS
        }
        self.stopping = False

    @property
    def worker(self) -> Child:
        return self.children["worker"]

    @property
    def api(self) -> Child:
        return self.children["api"]

    def start(self) -> Self:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.embedded is not None:
            self.embedded.start()
        for child in self.children.values():
            child.start()
        return self

    def wait_ready(self, timeout: float, progress: Callable[[str], None] | None = None) -> None:
        """Until /readyz answers 200; raises StackFailed if a started part exits or time
        runs out. `progress` hears what is still awaited."""
        deadline = time.monotonic() + timeout
        last = "starting"
        while time.monotonic() < deadline:
            for name, child in self.children.items():
                if child.exited:
                    raise StackFailed(
                        f"the {name} exited with {child.returncode}; see {child.log}"
                        f"\n{child.tail(20)}"
                    )
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
                waiting = [k for k, ok in r.json().get("checks", {}).items() if not ok]
                last = "waiting for " + ", ".join(waiting)
            except httpx.HTTPError:
                last = "waiting for the API to listen"
            if progress is not None:
                progress(last)
            time.sleep(0.25)
        raise StackFailed(f"not ready within {timeout:g} s ({last}); see {self.logs}")

    def supervise(self, on_restart: Callable[[str, int | None], None]) -> None:
        """Restart a part that exits (after a pause if it exited within 5 s of its last
        start) until `stop`; raises StackFailed if the embedded broker exits."""
        restarts: dict[str, float] = {}
        while not self.stopping:
            time.sleep(0.5)
            for name, child in self.children.items():
                if not child.running and not self.stopping:
                    on_restart(name, child.returncode)
                    if time.monotonic() - restarts.get(name, 0.0) < 5.0:
                        time.sleep(2.0)
                    restarts[name] = time.monotonic()
                    child.start()
            broker = self.embedded.process if self.embedded else None
            if broker is not None and broker.poll() is not None:
                raise StackFailed(f"the broker exited; see {self.logs / 'broker.log'}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the API and the worker together (each drains and checkpoints), then the
        broker; a part that takes longer than `timeout` is killed."""
        self.stopping = True
        running = [c for c in self.children.values() if c.running]
        for child in running:
            child.send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            if not child.wait(deadline - time.monotonic()):
                child.kill()
        if self.embedded is not None:
            self.embedded.stop()
