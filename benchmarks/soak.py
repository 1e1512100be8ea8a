"""Soak: the whole stack under a steady storefront mix for a long time; does anything grow?

`python -m benchmarks.soak [--decisions 100 --rewards 50 --events 25 --minutes 30]` starts
the stack as `scripts/up` does (`up`: embedded broker, worker, API; the storefront
catalog) and drives it open loop: decisions (a third of them three-slot slates) for 2,000
users, rewards for decisions made two seconds before, and product views of 250 of those
users, each at its own fixed rate from its own schedule. Every sample (a minute; 5 s with
`--quick`) it prints each process's resident memory and CPU (the broker and its object
store, the worker, the API, from /proc), the decide p50/p99 of that sample and the
model's freshness (GET /v1/models). It writes `soak.json` and `soak.png` into the
results dir and says whether every process's RSS stayed within 10% over the last
two-thirds of the run.

`python -m benchmarks soak [--quick]` runs the defaults (30 minutes; --quick: 40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import ROOT, metrics, proc_stat, save_figure, stack, table

CATALOG = ROOT / "examples" / "storefront.yaml"
REWARD_LAG_S = 2.0  # a reward names a decision made this long before it
FLAT_BAND = 0.10  # RSS within 10% over the last two-thirds
USERS, PRODUCTS = 2_000, 300
Sample = dict[str, Any]  # one sample as soak.json holds it
# Behaviour events come from this many returning shoppers (of the USERS), so that their
# profiles reach their caps (8 sessions, 32 values per dimension) within the first minutes
# and the soak measures the steady state rather than the feature store filling up (with
# 2,000 it filled for about 45 minutes).
SHOPPERS = 250


@dataclass(frozen=True)
class Mix:
    decisions: float = 100.0  # per second, a third of them three-slot slates
    rewards: float = 50.0
    events: float = 25.0
    seconds: float = 1800.0
    sample_seconds: float = 60.0


QUICK = Mix(seconds=40.0, sample_seconds=5.0)


def run(
    quick: bool, out: Path, mix: Mix | None = None, tracemalloc_seconds: float = 0.0
) -> dict[str, object]:
    """`tracemalloc_seconds` > 0: the API traces its Python allocations and reports where
    they grew (api.serving.memory); its RSS then counts the traces too."""
    mix = mix or (QUICK if quick else Mix())
    out.mkdir(parents=True, exist_ok=True)
    env = {"LOOPWISE_TRACEMALLOC_SECONDS": str(tracemalloc_seconds)} if tracemalloc_seconds else {}
    with stack(env) as s:
        host, port = s.url.removeprefix("http://").split(":")
        put_catalog(s.url)
        procs = Processes(s.process.pid)
        procs.sample()  # the CPU baseline
        parent, child = multiprocessing.get_context("spawn").Pipe(duplex=False)
        gen = multiprocessing.get_context("spawn").Process(
            target=_generator, args=(host, int(port), mix, child), daemon=True
        )
        started = time.monotonic()
        gen.start()
        samples: list[Sample] = []
        try:
            while gen.is_alive() or parent.poll():
                if not parent.poll(mix.sample_seconds + 30.0):
                    break
                load = parent.recv()
                if load is None:
                    break
                row = {
                    "t_s": round(time.monotonic() - started, 1),
                    **load,
                    "processes": procs.sample(),
                    "model": model(s.url),
                    "worker": worker(s.data_dir),
                }
                samples.append(row)
                print(line(row), flush=True)
        finally:
            gen.join(10)
            if gen.is_alive():
                gen.kill()
            traced = s.data_dir / "logs" / "tracemalloc-api.txt"
            if traced.exists():
                shutil.copy(traced, out / "soak-tracemalloc-api.txt")
    result: dict[str, object] = {
        "mix": asdict(mix),
        "samples": samples,
        "summary": summary(samples, mix),
    }
    result["plot"] = plot(samples, out / "soak.png", mix)
    (out / "soak.json").write_text(json.dumps(_finite(result), indent=2))
    return result


def report(result: dict[str, object]) -> str:
    summary = result["summary"]
    assert isinstance(summary, dict)  # built by `summary`
    rows = [
        [
            name,
            p["rss_mb_first"],
            p["rss_mb_at_10min"],
            p["rss_mb_last"],
            p["growth_last_two_thirds_pct"],
            p["cpu_mean"],
            "yes" if p["flat"] else "NO",
        ]
        for name, p in summary["processes"].items()
    ]
    head = ["process", "RSS MB first", "at 10 min", "last", "growth, last 2/3 %", "cores", "flat"]
    verdict = "yes" if summary["every_rss_flat"] else "NO"
    return (
        table(head, rows) + f"\ndecide p99 per sample: first {summary['p99_ms_first']:.1f} ms, "
        f"last {summary['p99_ms_last']:.1f} ms, max {summary['p99_ms_max']:.1f} ms; "
        f"errors {summary['errors']}\n"
        f"every process's RSS within {FLAT_BAND:.0%} over the last two-thirds: {verdict}\n"
        f"plot: {result['plot']}"
    )


# -- the stack's processes -------------------------------------------------------------------


class Processes:
    """The children of `up` by role, found again at every sample (a restart changes a pid)."""

    ROLES = (
        ("broker-store", "objectstore"),
        ("broker", "tansu"),
        ("worker", "cli worker"),
        ("api", "cli api"),
    )

    def __init__(self, up_pid: int) -> None:
        self.up_pid = up_pid
        self.cpu: dict[int, tuple[float, float]] = {}  # pid -> (wall, cpu seconds)

    def children(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if proc_stat(pid)[0] != self.up_pid:
                    continue
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            for role, needle in self.ROLES:
                if needle in cmd and role not in found:
                    found[role] = pid
                    break
        return found

    def sample(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        now = time.monotonic()
        for role, pid in sorted(self.children().items()):
            try:
                cpu = proc_stat(pid)[1]
                rss = rss_mb(pid)
            except OSError:
                continue
            wall0, cpu0 = self.cpu.get(pid, (now, cpu))
            self.cpu[pid] = (now, cpu)
            cores = (cpu - cpu0) / (now - wall0) if now > wall0 else 0.0
            out[role] = {"pid": pid, "rss_mb": round(rss, 1), "cores": round(cores, 3)}
        return out


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024.0
    raise OSError(f"no VmRSS for {pid}")


def put_catalog(url: str) -> None:
    r = httpx.put(
        f"{url}/v1/catalogs/storefront",
        content=CATALOG.read_bytes(),
        headers={"content-type": "application/yaml"},
        timeout=30.0,
    )
    r.raise_for_status()


def model(url: str) -> dict[str, float]:
    try:
        m = httpx.get(f"{url}/v1/models/storefront", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return {}
    fresh = m.get("freshness_seconds") or {}
    return {
        "learned": float(m.get("learned", math.nan)),
        "freshness_p50_s": float(fresh.get("0.5", math.nan)),
        "freshness_p99_s": float(fresh.get("0.99", math.nan)),
        **api_memory(url),
    }


def worker(data_dir: Path) -> dict[str, float]:
    """What the worker's own /metrics says: its consumer lag summed over its topics (records
    not read yet) and the join's open reward windows, so a learning lag can be placed."""
    try:
        port = json.loads((data_dir / "worker-stats.json").read_text())["metrics_port"]
        values = metrics(f"http://127.0.0.1:{port}")
    except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError):
        return {}
    lag = sum(v for k, v in values.items() if k.startswith("loopwise_worker_consumer_lag"))
    return {"consumer_lag": lag, "join_pending": values.get("loopwise_join_pending", math.nan)}


def api_memory(url: str) -> dict[str, float]:
    """What the API's /metrics says it holds: its RocksDB stores' shared cache (memtables
    included) in MB, the ledger's ids, the feature store's profiles in MB and the parsed
    VW examples its models cache (about 32 KB each), so RSS growth can be told apart."""
    try:
        values = metrics(url)
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    if "loopwise_rocksdb_cache_bytes" in values:
        out["api_rocksdb_mb"] = round(float(values["loopwise_rocksdb_cache_bytes"]) / 2**20, 1)
    if "loopwise_ledger_size" in values:
        out["api_ledger_ids"] = float(values["loopwise_ledger_size"])
    if "loopwise_feature_store_bytes" in values:
        out["api_profiles_mb"] = round(float(values["loopwise_feature_store_bytes"]) / 2**20, 1)
    if "loopwise_vw_parsed_examples" in values:
        out["api_vw_parsed"] = float(values["loopwise_vw_parsed_examples"])
    return out


def line(row: Sample) -> str:
    procs = row["processes"]
    assert isinstance(procs, dict)
    parts = [f"{row['t_s']:>7.0f} s"]
    parts += [f"{k} {v['rss_mb']:.0f} MB {v['cores']:.2f}c" for k, v in procs.items()]
    parts.append(f"decide p99 {row['p99_ms']:.1f} ms")
    m = row["model"]
    if isinstance(m, dict) and m:
        parts.append(f"learned {m['learned']:.0f}, fresh p50 {m['freshness_p50_s']:.2f} s")
        if "api_rocksdb_mb" in m:
            parts.append(f"api rocksdb {m['api_rocksdb_mb']:.0f} MB")
        if "api_profiles_mb" in m:
            parts.append(f"profiles {m['api_profiles_mb']:.1f} MB")
        if "api_vw_parsed" in m:
            parts.append(f"vw parsed {m['api_vw_parsed']:.0f}")
    w = row.get("worker")
    if isinstance(w, dict) and w:
        parts.append(f"worker lag {w['consumer_lag']:.0f}, open {w['join_pending']:.0f}")
    if row["errors"]:
        parts.append(f"errors {row['errors']}")
    return " | ".join(parts)


# -- the verdict and the plot ------------------------------------------------------------------


def summary(samples: list[Sample], mix: Mix) -> dict[str, Any]:
    roles = sorted({r for s in samples for r in s["processes"]})
    per: dict[str, dict[str, Any]] = {}
    ten = int(600 / mix.sample_seconds) - 1
    for role in roles:
        rss = [s["processes"][role]["rss_mb"] for s in samples if role in s["processes"]]
        cores = [s["processes"][role]["cores"] for s in samples if role in s["processes"]]
        tail = rss[len(rss) // 3 :] or rss
        per[role] = {
            "rss_mb_first": rss[0],
            "rss_mb_at_10min": rss[min(ten, len(rss) - 1)],
            "rss_mb_last": rss[-1],
            "growth_last_two_thirds_pct": round(100.0 * (tail[-1] / tail[0] - 1.0), 1),
            "band_last_two_thirds_pct": round(100.0 * (max(tail) / min(tail) - 1.0), 1),
            "flat": max(tail) / min(tail) - 1.0 <= FLAT_BAND,
            "cpu_mean": round(float(np.mean(cores)), 3),
        }
    p99 = [float(s["p99_ms"]) for s in samples]
    return {
        "processes": per,
        "every_rss_flat": bool(per) and all(p["flat"] for p in per.values()),
        "p99_ms_first": p99[0] if p99 else math.nan,
        "p99_ms_last": p99[-1] if p99 else math.nan,
        "p99_ms_max": max(p99) if p99 else math.nan,
        "errors": sum(int(s["errors"]) for s in samples),
        "sent": {k: sum(int(s["sent"][k]) for s in samples) for k in ("decide", "reward", "event")},
    }


def plot(samples: list[Sample], path: Path, mix: Mix) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, cpu, lat) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    minutes = [float(s["t_s"]) / 60.0 for s in samples]
    roles = sorted({r for s in samples for r in s["processes"]})
    for role in roles:
        xs = [m for m, s in zip(minutes, samples, strict=True) if role in s["processes"]]
        rows = [s["processes"][role] for s in samples if role in s["processes"]]
        mem.plot(xs, [r["rss_mb"] for r in rows], marker=".", label=role)
        cpu.plot(xs, [r["cores"] for r in rows], marker=".", label=role)
    lat.plot(minutes, [s["p50_ms"] for s in samples], marker=".", label="decide p50")
    lat.plot(minutes, [s["p99_ms"] for s in samples], marker=".", label="decide p99")
    mem.set_ylabel("RSS (MB)")
    cpu.set_ylabel("cores")
    lat.set_ylabel("ms")
    lat.set_xlabel("minutes")
    for ax in (mem, cpu, lat):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    title = (
        f"Soak: {mix.decisions:g} decisions/s (1/3 three-slot), {mix.rewards:g} rewards/s, "
        f"{mix.events:g} events/s"
    )
    return save_figure(fig, path, title)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- the load: three open-loop streams in a process of their own ------------------------------


def decide_body(i: int, run_id: str) -> bytes:
    body: dict[str, object] = {
        "catalog": "storefront",
        "event_id": f"{run_id}-{i}",
        "user_id": f"u{(i * 7919) % USERS}",
        "context": {"page": {"type": "home"}, "user": {"segment": f"s{i % 4}"}},
    }
    if i % 3 == 0:
        body["slots"] = 3
    return json.dumps(body).encode()


def reward_body(j: int, mix: Mix, run_id: str) -> bytes | None:
    """The reward of the j-th reward slot: for the decision made REWARD_LAG_S before."""
    i = int(j * mix.decisions / mix.rewards - REWARD_LAG_S * mix.decisions)
    if i < 0:
        return None
    body: dict[str, object] = {"event_id": f"{run_id}-{i}", "value": 1.0}
    if i % 3 == 0:
        body["slot"] = str(j % 3)
    return json.dumps(body).encode()


def event_body(k: int, rng: random.Random) -> bytes:
    user = rng.randrange(SHOPPERS)
    body = {
        "type": "product_view",
        "user_id": f"u{user}",
        "session_id": f"u{user}-s{k // 500}",
        "product": {"id": f"p{rng.randrange(PRODUCTS)}", "category": f"c{user % 12}"},
    }
    return json.dumps(body).encode()


class Stream:
    """One open-loop stream: request i at t0 + i / rate; latency from that time."""

    def __init__(self, name: str, path: str, rate: float, body: Callable[[int], bytes | None]):
        self.name, self.path, self.rate, self.body = name, path, rate, body
        self.latencies: list[float] = []
        self.sent = self.errors = 0


async def _drive(host: str, port: int, mix: Mix, conn: Connection) -> None:
    run_id = f"soak{os.getpid()}-{int(time.time())}"
    rng = random.Random(0)
    streams = [
        Stream("decide", "/v1/decide", mix.decisions, lambda i: decide_body(i, run_id)),
        Stream("reward", "/v1/rewards", mix.rewards, lambda j: reward_body(j, mix, run_id)),
        Stream("event", "/v1/events", mix.events, lambda k: event_body(k, rng)),
    ]
    t0 = time.perf_counter() + 0.1
    end = t0 + mix.seconds
    tasks = [asyncio.create_task(_stream(host, port, s, t0, end)) for s in streams if s.rate > 0]
    next_report = t0 + mix.sample_seconds
    while next_report <= end + 1e-6:
        await asyncio.sleep(max(0.0, next_report - time.perf_counter()))
        conn.send(_window(streams))  # a multiprocessing Connection
        next_report += mix.sample_seconds
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(None)


async def _stream(host: str, port: int, s: Stream, t0: float, end: float) -> None:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(16):
        pool.put_nowait(await asyncio.open_connection(host, port))
    pending: set[asyncio.Task[None]] = set()
    head = f"POST {s.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"

    async def one(body: bytes, scheduled: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            response = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for row in response.split(b"\r\n"):
                if row[:15].lower() == b"content-length:":
                    length = int(row[15:])
            await reader.readexactly(length)
            if response[9:10] == b"2":
                s.latencies.append(time.perf_counter() - scheduled)
            else:
                s.errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            s.errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        pool.put_nowait((reader, writer))

    i = 0
    while True:
        scheduled = t0 + i / s.rate
        if scheduled >= end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = s.body(i)
        i += 1
        if body is None:
            continue
        s.sent += 1
        task = asyncio.create_task(one(body, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=30.0)
    while not pool.empty():
        pool.get_nowait()[1].close()


def _window(streams: list[Stream]) -> dict[str, object]:
    """What the streams did since the last window, then forget it."""
    decide = np.asarray(streams[0].latencies, dtype=np.float64) * 1000.0
    out: dict[str, object] = {
        "sent": {s.name: s.sent for s in streams},
        "ok": {s.name: len(s.latencies) for s in streams},
        "errors": sum(s.errors for s in streams),
        "p50_ms": float(np.quantile(decide, 0.5)) if decide.size else math.nan,
        "p99_ms": float(np.quantile(decide, 0.99)) if decide.size else math.nan,
        "max_ms": float(decide.max()) if decide.size else math.nan,
    }
    for s in streams:
        s.latencies, s.sent, s.errors = [], 0, 0
    return out


def _generator(host: str, port: int, mix: Mix, conn: Connection) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_drive(host, port, mix, conn))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--decisions", type=float, default=Mix.decisions)
    parser.add_argument("--rewards", type=float, default=Mix.rewards)
    parser.add_argument("--events", type=float, default=Mix.events)
    parser.add_argument("--minutes", type=float, default=Mix.seconds / 60.0)
    parser.add_argument("--sample-seconds", type=float, default=Mix.sample_seconds)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--tracemalloc",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the API traces Python allocations and writes where they grew every SECONDS "
        "(soak-tracemalloc-api.txt in --out); its RSS then includes the traces",
    )
    args = parser.parse_args(argv)
    mix = Mix(args.decisions, args.rewards, args.events, args.minutes * 60.0, args.sample_seconds)
    result = run(False, args.out, mix, args.tracemalloc)
    print(report(result))
    summary = result["summary"]
    return 0 if isinstance(summary, dict) and summary["every_rss_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
