"""CPU cost per decision, split by stage, in-process on the objects the API uses.

Each stage runs alone in a loop over many calls with inputs precomputed from the stage
before it (so timers do not sit inside the measured work); `process_time_ns` gives CPU
time, `perf_counter_ns` wall time. The real handler (`api.decide.decide_route`) is then timed
end to end on a Starlette Request over the same stores, without a server: the gap
between it and the sum of the stages is the handler's own glue. Server + framework cost
per request is what `decide_latency` measures on the bare endpoint.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from api.serving.replica import LEDGER
from api.serving.state import State, open_state
from benchmarks.common import save_figure, table
from benchmarks.cost_stages import STAGES, shape_cost
from benchmarks.shapes import SHAPES
from engine import checkpoint
from engine.ledger import Ledger
from engine.limits import Limits
from streams.settings import Settings


def run(quick: bool, out: Path) -> dict[str, object]:
    calls = 200 if quick else 3000
    limits = Limits(max_features=5000)
    with tempfile.TemporaryDirectory(prefix="loopwise-cost-") as tmp:
        settings = Settings(data_dir=Path(tmp), limits=limits)
        state = _state(settings)
        try:
            shapes = {
                s.name: shape_cost(state, s, calls if s.features < 1000 else calls // 10)
                for s in SHAPES
            }
        finally:
            _close(state)
        ledger = _checkpoint_ledger(2_000 if quick else settings.ledger_capacity)
    main = shapes["50x20"]
    stages = main["stages_cpu_us"]
    assert isinstance(stages, dict)
    top = max(stages, key=lambda k: float(stages[k]))
    result: dict[str, object] = {
        "settings": {
            "calls_per_stage": calls,
            "calls_200x1000": calls // 10,
            "timer": "process_time_ns",
        },
        "shapes": shapes,
        "checkpoint_ledger": ledger,
        "top_stage_50x20": top,
        "top_stage_share_50x20": float(stages[top]) / float(main["sum_of_stages_cpu_us"]),  # type: ignore[arg-type]
    }
    result["plot"] = _plot(shapes, out)
    return result


def _plot(shapes: dict[str, dict[str, object]], out: Path) -> str:
    """One bar per shape: its handler CPU split into the timed stages and the glue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shapes), figsize=(4.2 * len(shapes), 4.2), squeeze=False)
    for ax, (name, shape) in zip(axes[0], shapes.items(), strict=True):
        stages = shape["stages_cpu_us"]
        assert isinstance(stages, dict)
        parts = {**stages, "handler glue": float(shape["handler_glue_cpu_us"])}  # type: ignore[arg-type]
        bottom = 0.0
        for stage, us in parts.items():
            ax.bar(0, float(us), bottom=bottom, label=stage, width=0.5)
            bottom += float(us)
        ax.set_xticks([])
        ax.set_title(f"{name}: {bottom:,.0f} us")
        ax.set_ylabel("CPU us per decision")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_figure(fig, out / "cost.png", "decide handler CPU by stage (server not included)")


def _checkpoint_ledger(keys: int, rounds: int = 5) -> dict[str, object]:
    """What a checkpoint's ledger costs in one uninterrupted call (a call that holds the
    GIL stalls the serving loop for as long, whichever thread makes it): the ledger as
    ring of digests (now) against the baseline, a JSON list of the ids in the header."""
    ids = [uuid.UUID(int=i).hex for i in range(keys)]
    ledger = Ledger(keys, ids)

    def best_ms(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - started) / 1e6)
        return min(times)

    copy = best_ms(ledger.encoded)
    blob = ledger.encoded()
    now = best_ms(lambda: checkpoint.encode({"offsets": {}}, {LEDGER: blob}))
    before = best_ms(lambda: checkpoint.encode({"offsets": {}, "ledger": ids}, {}))
    return {
        "keys": keys,
        "blob_ms": copy,
        "encode_ms": now,
        "encode_json_list_ms": before,
        "ratio_now_over_json_list": (copy + now) / before,
    }


def _state(settings: Settings) -> State:
    """The API's own resources (api.serving.state.open_state), without the broker tasks."""
    return open_state(settings)


def _close(state: State) -> None:
    state.replica.close()
    for kv in (state.catalogs.kv, state.outbox.kv, state.decisions.kv):
        kv.close()


def report(result: dict[str, object]) -> str:
    shapes = result["shapes"]
    assert isinstance(shapes, dict)
    names = list(shapes)
    rows: list[list[object]] = []
    for stage in STAGES:
        rows.append([stage, *(float(shapes[s]["stages_cpu_us"][stage]) for s in names)])
    rows.append(["sum of stages", *(float(shapes[s]["sum_of_stages_cpu_us"]) for s in names)])
    rows.append(["real handler", *(float(shapes[s]["handler_cpu_us"]) for s in names)])
    rows.append(["learning it (replica)", *(float(shapes[s]["learn_cpu_us"]) for s in names)])
    rows.append(
        ["vw_predict, squarecb", *(float(shapes[s]["vw_predict_squarecb_cpu_us"]) for s in names)]
    )
    text = table(["stage (CPU us/decision)", *names], rows)
    top = result["top_stage_50x20"]
    share = float(result["top_stage_share_50x20"])  # type: ignore[arg-type]
    led = result["checkpoint_ledger"]
    assert isinstance(led, dict)
    ledger = (
        f"checkpoint of a full ledger ({led['keys']:,} ids): copying its digests "
        f"{led['blob_ms']:.1f} ms on the serving loop, encoding "
        f"{led['encode_ms']:.1f} ms in the checkpoint thread (mostly sha256, which lets go "
        f"of the GIL) against {led['encode_json_list_ms']:.1f} ms for a JSON list in the "
        "header, whose json.dumps holds the GIL throughout\n"
    )
    return (
        f"cost\n{text}\ntop stage (50x20): {top} ({share:.0%} of the stages)\n{ledger}"
        + json.dumps({"note": "server+framework cost: see decide_latency bare endpoint"})
    )
