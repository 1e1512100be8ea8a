"""The picture of a simulated run: a PNG of CTR over time against the oracle and uniform
random, and what the learned policy shows each segment; under constraints, a third panel
of what they removed. Needs matplotlib (the `sim` extra)."""

from __future__ import annotations

import pathlib

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sim.probes import PROBE_VIEWS
from sim.results import SimResult

MAX_LABELLED_STOCK_OUTS = 4  # more sell-outs: lines only, counted in the legend


def plot(result: SimResult, path: pathlib.Path, title: str) -> pathlib.Path:
    """Save a PNG: CTR per window vs oracle and uniform, and best-action probabilities;
    under constraints, the best in-stock action and a third panel of removals by reason."""
    if result.constrained:
        figure = Figure(figsize=(16.0, 4.8), layout="constrained")
        FigureCanvasAgg(figure)
        ctr_axes, probe_axes, removed_axes = figure.subplots(1, 3, width_ratios=[2, 1.1, 1.4])
        _plot_ctr(ctr_axes, result)
        _plot_in_stock_probes(probe_axes, result)
        _plot_removals(removed_axes, result)
    else:
        figure = Figure(figsize=(11.0, 4.5), layout="constrained")
        FigureCanvasAgg(figure)
        ctr_axes, probe_axes = figure.subplots(1, 2, width_ratios=[2, 1])
        _plot_ctr(ctr_axes, result)
        _plot_probes(probe_axes, result)
        if result.feature_store is not None:
            _plot_freshness(ctr_axes, probe_axes, result)
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, format="png")
    return path


def _plot_ctr(axes: Axes, result: SimResult) -> None:
    xs = [n for n, _ in result.ctr_by_window]
    ys = [ctr for _, ctr in result.ctr_by_window]
    axes.plot(xs, ys, marker="o", markersize=3, label="Loopwise (CTR per window)")
    if result.expected_ctr_by_window:
        axes.plot(
            [n for n, _ in result.expected_ctr_by_window],
            [c for _, c in result.expected_ctr_by_window],
            color="tab:blue",
            linewidth=1.0,
            alpha=0.5,
            label="expected CTR of the banners shown",
        )
    axes.axhline(result.best_ctr, color="tab:green", linestyle="--", label="oracle (best)")
    axes.axhline(result.uniform_ctr, color="tab:red", linestyle=":", label="uniform random")
    if result.constrained:
        _plot_constrained_ctr(axes, result)
        if result.decisions > 0:
            axes.set_xlim(0, result.decisions * 1.02)
    extra = [c for _, c in result.eligible_best_by_window] if result.constrained else []
    top = max([result.best_ctr, result.uniform_ctr, *ys, *extra])
    axes.set_ylim(0.0, top * 1.2 if top > 0 else 1.0)
    axes.set_xlabel("decisions")
    axes.set_ylabel("click-through rate")
    axes.set_title("CTR over time")
    if result.constrained:  # below the axes: the lines and sell-out labels stay visible
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    else:
        axes.legend(loc="lower right")
    axes.grid(alpha=0.3)


def _plot_constrained_ctr(axes: Axes, result: SimResult) -> None:
    """The oracle among the eligible actions per window, and where banners sold out."""
    if result.eligible_best_by_window:
        xs = [n for n, _ in result.eligible_best_by_window]
        ys = [c for _, c in result.eligible_best_by_window]
        axes.plot(
            xs, ys, color="tab:green", linewidth=1.0, alpha=0.7, label="oracle among eligible"
        )
    outs = result.stock_outs
    for k, (at, action) in enumerate(outs):
        label = f"a banner sold out ({len(outs)}x)" if k == 0 else None
        axes.axvline(at, color="tab:gray", linewidth=0.8, alpha=0.6, label=label)
        if len(outs) <= MAX_LABELLED_STOCK_OUTS:
            axes.annotate(
                action,
                xy=(at, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10 - 10 * k),
                textcoords="offset points",
                fontsize=7,
                color="tab:gray",
            )


def _plot_in_stock_probes(axes: Axes, result: SimResult) -> None:
    names = list(result.best_in_stock_probability)
    values = [result.best_in_stock_probability[n] for n in names]
    targets = [result.best_in_stock_action.get(n) for n in names]
    colours = [
        "tab:orange" if t is not None and t != result.overall_best_action.get(n, t) else "tab:blue"
        for n, t in zip(names, targets, strict=True)
    ]
    bars = axes.bar(range(len(names)), values, color=colours)
    axes.bar_label(bars, fmt="%.2f")
    axes.set_xticks(
        range(len(names)),
        [f"{n}\n{t or 'all sold out'}" for n, t in zip(names, targets, strict=True)],
    )
    axes.tick_params(axis="x", labelsize=7)
    if result.n_in_stock > 0:
        axes.axhline(1.0 / result.n_in_stock, color="tab:red", linestyle=":", label="1/K in stock")
    elif names:
        axes.text(0.5, 0.5, "every banner sold out", ha="center", transform=axes.transAxes)
    if "tab:orange" in colours:
        axes.bar([0], [0], color="tab:orange", label="best sold out: next best")
    if names:
        axes.legend(loc="upper right", fontsize=7)
    axes.set_ylim(0.0, 1.15)
    axes.set_ylabel("probability of best in-stock action")
    axes.set_title("Learned policy per segment (in stock)")


def _plot_removals(axes: Axes, result: SimResult) -> None:
    """Actions removed per window by reason (stacked), and decisions with nothing eligible."""
    reasons = list(result.removed)
    xs = [n for n, _ in result.removed_by_window]
    starts = [0, *xs[:-1]][: len(xs)]
    widths = [(n - s) * 0.9 for n, s in zip(xs, starts, strict=True)]
    bottom = [0.0] * len(xs)
    for reason in reasons:
        heights = [float(counts.get(reason, 0)) for _, counts in result.removed_by_window]
        axes.bar(starts, heights, widths, bottom=bottom, align="edge", label=reason, alpha=0.8)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    if result.nothing_by_window:
        ends = [n for n, _ in result.nothing_by_window]
        axes.plot(
            [(s + n) / 2 for s, n in zip([0, *ends[:-1]], ends, strict=True)],
            [c for _, c in result.nothing_by_window],
            color="black",
            marker="o",
            markersize=3,
            label="decisions with nothing eligible",
        )
    if not reasons and not result.nothing_by_window:
        axes.text(0.5, 0.5, "nothing removed", ha="center", va="center", transform=axes.transAxes)
    else:
        nothing = [c for _, c in result.nothing_by_window]
        top = max([*bottom, *nothing, 1.0])
        axes.set_ylim(0.0, top * 1.35)  # room for the legend above the bars
        axes.legend(loc="upper left", fontsize=7)
    axes.set_xlabel("decisions")
    axes.set_ylabel("count per window")
    axes.set_title("Removed by constraints")
    axes.grid(alpha=0.3)


def _plot_probes(axes: Axes, result: SimResult) -> None:
    names = list(result.best_action_probability)
    values = [result.best_action_probability[n] for n in names]
    bars = axes.bar(names, values, color="tab:blue")
    axes.bar_label(bars, fmt="%.2f")
    if result.n_actions > 0:
        axes.axhline(1.0 / result.n_actions, color="tab:red", linestyle=":", label="1/K")
        axes.legend(loc="upper right")
    axes.set_ylim(0.0, 1.1)
    axes.set_ylabel("probability of best action")
    axes.set_title("Learned policy per segment")
    axes.tick_params(axis="x", labelrotation=30)


def _plot_freshness(ctr_axes: Axes, probe_axes: Axes, result: SimResult) -> None:
    """The share of decisions that saw their visit's own views, per window (right axis)."""
    probe_axes.set_ylabel(f"p(intent's best banner) after {PROBE_VIEWS} views")
    probe_axes.set_title("Learned policy per intent")
    if not result.feature_store or not result.fresh_by_window:
        return
    share = ctr_axes.twinx()
    share.plot(
        [n for n, _ in result.fresh_by_window],
        [f for _, f in result.fresh_by_window],
        color="tab:gray",
        linestyle="--",
        linewidth=1.0,
        label="decisions that saw their own views (right axis)",
    )
    share.set_ylim(0.0, 1.05)
    share.set_ylabel("share of decisions", color="tab:gray")
    share.legend(loc="upper left", fontsize=8)
