"""`python -m benchmarks --quick` runs the benchmarks and writes sane results."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.broker import FETCH_WAITS_MS, HOP_MESSAGES
from benchmarks.envs import ENVS
from benchmarks.sweep import PerSegment, parse_spec
from engine.errors import InvalidInput
from engine.features import Features
from engine.learning import Learning
from policies.base import Example
from policies.vw import VWPolicy, vw_args

ROOT = Path(__file__).resolve().parent.parent


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def run_quick(out: Path, names: list[str], timeout: float) -> dict[str, Any]:
    """`python -m benchmarks <names> --quick --out <out>` must succeed; its results.json."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *names, "--quick", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_quick_offline_benchmarks_write_finite_results(tmp_path: Path) -> None:
    results = run_quick(tmp_path, ["quality", "cost", "ope"], timeout=240)
    assert {"machine", "benchmarks", "quick"} <= set(results)
    assert results["machine"]["nproc"] >= 1 and "vowpalwabbit" in results["machine"]["packages"]

    quality = results["benchmarks"]["quality"]
    assert {"settings", "environments", "verdict", "plots"} <= set(quality)
    assert set(quality["environments"]) == {
        "segments",
        "preferences",
        "interactions",
        "drift",
        "sparse",
    }
    for rows in quality["environments"].values():
        assert {"loopwise-default", "uniform", "thompson", "linucb", "oracle"} <= set(rows)
        for row in rows.values():
            assert {"cumulative_reward", "cumulative_regret", "ctr"} <= set(row)
        assert rows["oracle"]["cumulative_regret"] == 0.0
    assert isinstance(
        quality["verdict"]["default_beats_every_non_oracle_baseline_everywhere"], bool
    )
    for path in quality["plots"]:
        assert Path(path).stat().st_size > 0

    cost = results["benchmarks"]["cost"]
    assert set(cost["shapes"]) == {"10x20", "50x20", "200x1000"}
    for shape in cost["shapes"].values():
        assert {"stages_cpu_us", "sum_of_stages_cpu_us", "handler_cpu_us"} <= set(shape)
        assert all(v >= 0 for v in shape["stages_cpu_us"].values())
    assert cost["top_stage_50x20"] in cost["shapes"]["50x20"]["stages_cpu_us"]
    assert Path(cost["plot"]).stat().st_size > 0

    ope = results["benchmarks"]["ope"]
    assert "error" not in ope, ope

    numbers = _numbers(quality["environments"]) + _numbers(cost["shapes"])
    assert numbers and all(math.isfinite(x) for x in numbers)


@pytest.mark.integration
def test_quick_optimisation_benchmark_judges_every_run_on_its_unseen_half(tmp_path: Path) -> None:
    result = run_quick(tmp_path, ["optimize"], timeout=240)["benchmarks"]["optimize"]
    outcomes = result["outcomes"]
    assert len(outcomes) == 2 * len(ENVS) * 2  # starts x storefronts x seeds
    for o in outcomes:
        assert o["reason"] and set(o["cold"]) == {g for g in result["settings"]["grid"]}
        assert o["kept"] == (o["cold"][o["promoted"]] if o["promoted"] else o["replaced"])
        assert all(math.isfinite(v) and v >= 0 for v in (o["replaced"], *o["cold"].values()))
    for key, row in result["summary"].items():
        if isinstance(row, dict):
            assert 0 <= row["promoted_worse"] <= row["promoted"] <= row["runs"] == 2, key
    assert (tmp_path / "optimize.png").stat().st_size > 10_000


def test_quick_features_benchmark_exercises_every_measurement(tmp_path: Path) -> None:
    features = run_quick(tmp_path, ["features"], timeout=300)["benchmarks"]["features"]
    assert "error" not in features, features

    fresh = features["freshness"]
    assert fresh["not_seen_within_10s"] == 0 and len(fresh["samples_ms"]) == fresh["events"]

    ingestion = features["ingestion"]
    (round_,) = ingestion["rounds"]
    assert round_["profile_changelog_records"] == ingestion["events"]
    assert round_["popularity_changelog_records"] == ingestion["product_events"]
    assert round_["passthrough_pid"] > 0  # the baseline counted in a process of its own

    wide = features["wide_decide"]
    assert set(wide["rows"]) == {"50x20", "50x1000"}
    for rows in wide["rows"].values():
        assert all(row["errors"] == 0 and row["ok"] == row["sent"] for row in rows)

    join = features["profile_join"]
    assert set(join["p50_ms"]) == {"store_off", "anonymous", "rich_user"}
    assert {"user_join_ms", "popularity_join_ms"} <= set(join["paired"])
    assert join["features_joined"]["user_and_session"] > 0
    assert join["features_joined"]["actions_with_popularity"] > 0

    numbers = _numbers({k: features[k] for k in ("freshness", "ingestion", "profile_join")})
    assert numbers and all(math.isfinite(x) for x in numbers)
    assert Path(features["plot"]).stat().st_size > 0


def test_quick_stack_benchmarks_measure_what_they_report(tmp_path: Path) -> None:
    names = [
        "freshness",
        "decide_latency",
        "learning_throughput",
        "constraints",
        "broker",
        "experiments",
    ]
    results = run_quick(tmp_path, names, timeout=600)["benchmarks"]
    for name in names:
        assert "error" not in results[name], results[name]

    fresh = results["freshness"]
    assert fresh["not_learned_within_timeout"] == 0 and fresh["learned_reported"] >= 10

    latency = results["decide_latency"]["summary"]
    assert set(latency["capacity_rps"]) == {"bare", "10x20", "50x20", "200x1000"}
    assert Path(latency["plot"]).stat().st_size > 0
    for name, rows in results["decide_latency"]["targets"].items():
        assert rows and all(row["errors"] == 0 for row in rows), name

    throughput = results["learning_throughput"]
    assert throughput["pipeline"]["learned"] > 0 and throughput["bare_vw"]["learn_per_s"] > 0

    assert results["constraints"]["eligible_mean"]["constrained"] < 50.0  # rules removed some

    broker = results["broker"]
    assert [p["consumers"] for p in broker["points"]] == [0, 3, 0, 3]
    sizes = [p["log_messages"] for p in broker["points"]]
    assert sizes == sorted(sizes) and sizes[-1] >= 2_000  # the log grew between the points
    assert Path(broker["plot"]).stat().st_size > 0
    hops = broker["hop_latency_by_fetch_wait"]
    assert [h["fetch_wait_ms"] for h in hops] == list(FETCH_WAITS_MS)
    assert all(h["received"] == HOP_MESSAGES // 10 for h in hops)  # every message arrived once

    experiments = results["experiments"]
    assert experiments["overhead"]["p50_ratio"] > 0 and experiments["overhead"]["calls"] == 300
    beside = experiments["beside_evaluation"]
    assert beside["evaluation_state"] == "done" and beside["evaluation_rows"] >= 200, beside

    assert all(math.isfinite(x) for x in _numbers(results))


def test_the_sweep_plays_its_specs_validated_as_catalog_settings() -> None:
    """`benchmarks.sweep` builds each SPEC as a catalog's learning would be, floor aside."""
    policy, floor = parse_spec("regcbopt:mellowness=0.001:optimizer=coin:floor=0.05")
    assert isinstance(policy, VWPolicy) and floor == 0.05
    args = policy.args.split()
    assert args[args.index("--mellowness") + 1] == "0.001" and "--coin" in args
    policy.close()
    default, _ = parse_spec("regcbopt")
    assert isinstance(default, VWPolicy) and default.args == vw_args(Learning())
    default.close()
    with pytest.raises(InvalidInput) as info:
        parse_spec("squarecb:mellowness=0.1")
    assert info.value.field == "learning.exploration.mellowness"
    args = ["linucb", "regcbopt", "rule-global", "thompson-per-segment"]
    args += ["--envs", "sparse", "segments", "--steps", "1500"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.sweep", *args, "--seeds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "sparse 1,500, segments 1,500" in proc.stdout.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[3:]}
    assert set(rows) == {"linucb", "regcbopt", "rule-global", "thompson-per-segment"}
    for spec in ("regcbopt", "thompson-per-segment"):
        assert all(float(cell) > 0 for cell in rows[spec][1::3])  # regret per storefront
    stream = ENVS["sparse"]().stream(0, 1500)  # the fixed rule, computed here independently
    best_overall = stream.ctr[:, int(np.argmax(stream.ctr.mean(axis=0)))]
    assert rows["rule-global"][1] == f"{(stream.ctr.max(axis=1) - best_overall).sum():.0f}"


def test_thompson_per_segment_keeps_one_posterior_per_segment() -> None:
    """The sweep's informed learner: what a click teaches in one segment stays there."""
    policy, floor = parse_spec("thompson-per-segment")
    assert isinstance(policy, PerSegment) and floor == 0.0
    actions = list(ENVS["segments"]().actions[:2])
    a: Features = {"user": {"segment": "a"}}
    b: Features = {"user": {"segment": "b"}}
    for _ in range(30):
        policy.learn(Example(a, actions, 0, 0.5, 1.0))
        policy.learn(Example(a, actions, 1, 0.5, 0.0))
        policy.learn(Example(b, actions, 0, 0.5, 0.0))
        policy.learn(Example(b, actions, 1, 0.5, 1.0))
    assert policy.learned == 120
    for context, best in ((a, 0), (b, 1)):
        pmf, scores = policy.ranked(context, actions)
        assert int(np.argmax(scores)) == best and pmf[best] > 0.9, (context, pmf, scores)
    with pytest.raises(InvalidInput):
        parse_spec("thompson-per-segment:draws=3")


@pytest.mark.integration
def test_quick_soak_samples_every_process(tmp_path: Path) -> None:
    """`soak --quick` samples the RSS and CPU of the broker, its object store, the worker
    and the API, and the decide latency, several times; every number is finite."""
    soak = run_quick(tmp_path, ["soak"], timeout=300)["benchmarks"]["soak"]
    assert "error" not in soak, soak
    samples = soak["samples"]
    assert len(samples) >= 5
    for sample in samples:
        assert set(sample["processes"]) == {"broker", "broker-store", "worker", "api"}, sample
        assert all(p["rss_mb"] > 0 and p["cores"] >= 0 for p in sample["processes"].values())
        assert sample["sent"]["decide"] > 0 and sample["errors"] == 0
    last = samples[-1]["worker"]  # the worker's own /metrics, read once it serves them
    assert last["consumer_lag"] >= 0 and last["join_pending"] >= 0, last
    summary = soak["summary"]
    assert set(summary["processes"]) == {"broker", "broker-store", "worker", "api"}
    assert isinstance(summary["every_rss_flat"], bool)
    assert summary["sent"]["reward"] > 0 and summary["sent"]["event"] > 0
    assert all(math.isfinite(x) for x in _numbers(samples) + _numbers(summary["processes"]))
    saved = json.loads((tmp_path / "soak.json").read_text())
    assert len(saved["samples"]) == len(samples)
    assert Path(soak["plot"]).stat().st_size > 0


def test_quick_personalizer_latency_measures_every_target_and_the_sdk(tmp_path: Path) -> None:
    result = run_quick(tmp_path, ["personalizer_latency"], timeout=300)
    latency = result["benchmarks"]["personalizer_latency"]
    assert "error" not in latency, latency
    server = latency["server"]
    for run in server["runs"]:  # every request of every target answered with a success
        assert run["errors"] == 0 and run["ok"] == run["sent"] > 0, run
    assert set(server["quantiles_ms"]) == {"stored", "inline", "rank"}
    assert set(server["ratios"]) == {
        f"{t}/stored {q}" for t in ("inline", "rank") for q in ("p50", "p99")
    }
    client = latency["client"]["quantiles_ms"]
    assert set(client) == {"sdk rank", "httpx stored", "httpx inline"}
    assert all(math.isfinite(x) and x > 0 for x in _numbers(latency["server"]["ratios"]))
    assert all(math.isfinite(x) and x > 0 for x in _numbers(client))
    assert Path(server["plot"]).stat().st_size > 10_000


@pytest.mark.integration
def test_quick_personalizer_storefront_plays_three_arms_on_one_stream(tmp_path: Path) -> None:
    """Inline, stored and uniform catalogs on one stack see the same visitors: every
    decision is learned, every click's reward accepted, and no arm beats the oracle."""
    name = "personalizer_storefront"
    result = run_quick(tmp_path, [name], timeout=180)["benchmarks"][name]
    assert "error" not in result, result
    visitors = result["settings"]["visitors_per_seed"]
    (seed,) = result["per_seed"]
    for arm, row in seed["arms"].items():
        assert row["learned"] >= visitors and row["fallbacks"] == 0, arm
        assert set(row["rewards"]) == {"accepted"} and row["rewards"]["accepted"] == row["clicks"]
        assert 0 < row["min_logged_probability"] <= 1
    assert set(seed["arms"]["stored"]["policies"]) == {"vw:regcbopt"}
    assert set(seed["arms"]["uniform"]["policies"]) == {"uniform"}
    whole = result["summary"]["whole_run"]
    oracle = whole["oracle"]["mean"]
    assert oracle > whole["stable_best"]["mean"] > whole["uniform_expected"]["mean"]
    assert all(whole[arm]["expected_ctr"]["mean"] < oracle for arm in ("inline", "stored"))
    uniform = whole["uniform"]["expected_ctr"]["mean"]  # uniform shows a random candidate
    assert abs(uniform - whole["uniform_expected"]["mean"]) < 0.03
    curves = result["curves"]
    assert len(curves["inline_expected_ctr"]["mean"]) == len(curves["decisions"]) >= 3
    assert all(math.isfinite(x) for x in _numbers(result["summary"]) + _numbers(curves))
    assert Path(result["plot"]).stat().st_size > 10_000
