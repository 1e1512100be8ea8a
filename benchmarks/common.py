"""What every benchmark shares: the machine description, statistics, tables, the stack and
a py-spy flame graph of a running process."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import numpy.typing as npt

from streams.broker import free_port
from streams.telemetry import samples

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vowpalwabbit", "starlette", "uvicorn", "faust-streaming", "numpy", "msgspec")
Floats = npt.NDArray[np.float64]


def machine() -> dict[str, object]:
    """nproc, CPU model, Python and the versions of the packages on the hot path."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count() or 1,
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def mean_ci(samples: Sequence[float] | Floats) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for a single sample)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()) if x.size else math.nan, 0.0
    return float(x.mean()), float(_t95(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def curve_ci(rows: Floats) -> tuple[Floats, Floats]:
    """Per-column mean and 95% half-width over the rows (seeds)."""
    mean = rows.mean(axis=0)
    if rows.shape[0] < 2:
        return mean, np.zeros_like(mean)
    half = _t95(rows.shape[0] - 1) * rows.std(axis=0, ddof=1) / math.sqrt(rows.shape[0])
    return mean, half


def _t95(dof: int) -> float:
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, dof))
    except ImportError:  # scipy is a dev dependency; the normal quantile is close enough
        return 1.96


def quantiles_ms(seconds: Sequence[float] | Floats) -> dict[str, float]:
    x = np.asarray(seconds, dtype=np.float64) * 1000.0
    if x.size == 0:
        return {"p50": math.nan, "p99": math.nan, "p99.9": math.nan, "max": math.nan}
    p50, p99, p999 = np.quantile(x, [0.5, 0.99, 0.999])
    return {"p50": float(p50), "p99": float(p99), "p99.9": float(p999), "max": float(x.max())}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; floats shown with 4 significant digits."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def proc_stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds so far) of process `pid`, from Linux /proc (OSError if
    it is gone or there is no /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def env_with(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.update(extra)
    return env


def settle(url: str, catalogs: Sequence[str], wait: float, timeout: float = 60.0) -> None:
    """Wait until `catalogs` (every catalog of the stack) learned every decision made so far,
    each learned with the default reward `wait` seconds after it: one run's learning must
    not land in the next run's measurement, which would then measure that learning's load."""
    deadline = time.monotonic() + timeout
    time.sleep(wait)
    while time.monotonic() < deadline:
        learned = sum(int(httpx.get(f"{url}/v1/models/{c}").json()["learned"]) for c in catalogs)
        if learned >= decisions(url):
            return
        time.sleep(0.25)


def metrics(url: str, timeout: float = 5.0) -> dict[str, float]:
    """The server's /metrics samples (streams.telemetry.samples)."""
    return samples(httpx.get(f"{url}/metrics", timeout=timeout).text)


def decisions(url: str) -> int:
    """Decisions the server has made, from /metrics."""
    return int(metrics(url).get("loopwise_decisions_total", 0))


@dataclass
class Stack:
    """`python -m loopwise.cli up` in a temp data dir on free ports; stopped by its PID."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    ready_seconds: float


@contextlib.contextmanager
def stack(extra_env: Mapping[str, str] | None = None, timeout: float = 120.0) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="loopwise-bench-") as tmp:
        data = Path(tmp)
        port, broker_port = free_port(), free_port()
        command = [sys.executable, "-m", "loopwise.cli", "up", "--data-dir", str(data)]
        command += ["--port", str(port), "--broker-port", str(broker_port)]
        command += ["--timeout", str(timeout)]
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env_with(extra_env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: nothing of it outlives us
        )
        try:
            url = _wait_up(process, timeout + 10.0, data)
            yield Stack(url, process, data, time.monotonic() - started)
        finally:
            stop(process)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever of the stack is left


def _wait_up(process: subprocess.Popen[bytes], timeout: float, data: Path) -> str:
    assert process.stdout is not None  # we asked for a pipe
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode(errors="replace")
        if not line:
            break
        if line.startswith("Loopwise is up: "):
            return line.split()[3]
    raise RuntimeError(f"the stack did not come up (exit {process.poll()}); see {data}/logs")


def stop(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Ask a child to stop with `sig`; kill it after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def save_figure(fig: Figure, path: Path, title: str) -> str:
    """Title, lay out, write (PNG, 90 dpi) and close a benchmark figure; its path."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def flamegraph(url: str, pid: int, out: Path, seconds: float) -> str | None:
    """py-spy against a running API process, if py-spy is installed; the SVG path."""
    spy = shutil.which("py-spy") or str(Path(__import__("sys").executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    path = out / "decide_flamegraph.svg"
    done = subprocess.run(
        [spy, "record", "-o", str(path), "-d", str(int(seconds)), "-p", str(pid), "-r", "200"],
        capture_output=True,
        timeout=seconds + 60,
    )
    return str(path) if done.returncode == 0 and path.exists() else None
