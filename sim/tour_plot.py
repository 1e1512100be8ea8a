"""The picture of a tour (`loopwise tour`): a PNG of four panels, readable without colour
(line styles, markers and labels tell the series apart). Needs matplotlib (the `sim`
extra).

1. each arm's mean with its anytime-valid interval over the A/B's decisions, and each
   arm's true mean (dashed), the oracle and the marketer's rule over all traffic;
2. the challenger's difference to control with its interval, and the true difference;
3. the evaluation's IPS, SNIPS and DR estimates with intervals beside each candidate's
   true value (a refused estimate is written out);
4. apprentice mode's agreement, baseline reward and the model's range beside the truth,
   with the failover drill's counts.
"""

from __future__ import annotations

import pathlib
import textwrap

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sim.tour_result import METHODS, Sample, Tour

ARM_STYLES = (("tab:blue", "o", "-"), ("tab:orange", "s", "--"), ("tab:green", "^", "-."))
METHOD_MARKERS = {"ips": "o", "snips": "s", "dr": "D"}
REASON_WIDTH = 46  # characters per line of a refusal's reason


def plot(tour: Tour, path: pathlib.Path) -> pathlib.Path:
    figure = Figure(figsize=(13.0, 9.0), layout="constrained")
    FigureCanvasAgg(figure)
    (means, difference), (evaluation, apprentice) = figure.subplots(2, 2)
    samples = [s for s in (*tour.ab.samples, tour.ab.final) if all(i.n for i in s.arms.values())]
    _plot_means(means, tour, samples)
    _plot_difference(difference, tour, samples)
    _plot_evaluation(evaluation, tour)
    _plot_apprentice(apprentice, tour)
    figure.suptitle(
        f"Loopwise tour on the '{tour.env}' storefront: the default VW policy against a "
        f"marketer's rule, an evaluation, apprentice mode and a failover"
    )
    figure.supxlabel(_failover_line(tour), fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, format="png")
    return path


def _decisions(s: Sample) -> int:
    return sum(i.n for i in s.arms.values())


def _plot_means(axes: Axes, tour: Tour, samples: list[Sample]) -> None:
    ab = tour.ab
    xs = [_decisions(s) for s in samples]
    for k, arm in enumerate(ab.final.arms):
        colour, marker, style = ARM_STYLES[k % len(ARM_STYLES)]
        label = _arm_label(tour, arm)
        axes.fill_between(
            xs,
            [s.arms[arm].low for s in samples],
            [s.arms[arm].high for s in samples],
            color=colour,
            alpha=0.15,
            hatch="//" if k % 2 else None,
            linewidth=0,
        )
        for bound in ("low", "high"):  # the band's edges, visible where bands overlap
            axes.plot(
                xs,
                [getattr(s.arms[arm], bound) for s in samples],
                color=colour,
                linestyle=style,
                linewidth=0.8,
                alpha=0.8,
            )
        axes.plot(
            xs,
            [s.arms[arm].mean for s in samples],
            color=colour,
            marker=marker,
            markersize=4,
            linestyle=style,
            label=f"{label}: mean and interval",
        )
        axes.plot(
            xs,
            [s.truth[arm] for s in samples],
            color=colour,
            linestyle=":",
            linewidth=2.0,
            label=f"{arm}: true mean (click model)",
        )
    axes.axhline(ab.oracle, color="black", linestyle="--", linewidth=1.0, label="oracle")
    axes.text(
        0.02,
        0.97,
        f"{ab.clicks} clicks posted as rewards; the results hold {ab.rewards_learned}",
        transform=axes.transAxes,
        fontsize=8,
        va="top",
    )
    axes.set_ylim(0.0, max(ab.oracle * 1.35, 0.1))
    axes.set_xlabel("decisions learned (both arms)")
    axes.set_ylabel("click-through rate")
    axes.set_title("A/B: each arm's mean, anytime-valid interval, truth")
    axes.legend(loc="lower right", fontsize=7)
    axes.grid(alpha=0.3)


def _arm_label(tour: Tour, arm: str) -> str:
    if arm == tour.ab.control:
        return f"{arm} (default VW)"
    return f"{arm} (always {tour.ab.marketer_banner})"


def _plot_difference(axes: Axes, tour: Tour, samples: list[Sample]) -> None:
    ab = tour.ab
    xs = [_decisions(s) for s in samples]
    for arm in ab.final.difference:
        axes.fill_between(
            xs,
            [s.difference[arm].low for s in samples],
            [s.difference[arm].high for s in samples],
            color="tab:purple",
            alpha=0.15,
            linewidth=0,
            label=f"{arm} - {ab.control}: interval",
        )
        for bound in ("low", "high"):
            axes.plot(
                xs,
                [getattr(s.difference[arm], bound) for s in samples],
                color="tab:purple",
                linewidth=0.8,
                alpha=0.8,
            )
        axes.plot(
            xs,
            [s.difference[arm].mean for s in samples],
            color="tab:purple",
            marker="o",
            markersize=4,
            label=f"{arm} - {ab.control}: measured",
        )
        axes.plot(
            xs,
            [s.difference_truth[arm] for s in samples],
            color="black",
            linestyle=":",
            linewidth=2.0,
            label="true difference",
        )
    axes.axhline(0.0, color="gray", linewidth=0.8)
    axes.set_xlabel("decisions learned (both arms)")
    axes.set_ylabel("difference in click-through rate")
    axes.set_title("A/B: difference to control")
    axes.legend(loc="lower right", fontsize=7)
    axes.grid(alpha=0.3)


def _plot_evaluation(axes: Axes, tour: Tour) -> None:
    ev = tour.evaluation
    axes.set_title(f"Evaluation on the A/B's log ({ev.rows} rows): estimates vs truth")
    if ev.state != "done":
        axes.text(0.5, 0.5, f"evaluation {ev.state}: {ev.error}", ha="center", va="center")
        return
    names = [c.name for c in ev.candidates]
    for i, c in enumerate(ev.candidates):
        axes.plot(
            [i - 0.35, i + 0.35],
            [c.truth, c.truth],
            color="black",
            linestyle="--",
            linewidth=2.0,
            label="true value (click model)" if i == 0 else None,
        )
        refused: dict[str, list[str]] = {}
        for k, method in enumerate(METHODS):
            e = c.estimates[method]
            if not e.supported:
                refused.setdefault(str(e.reason), []).append(method.upper())
                continue
            x = i - 0.2 + 0.2 * k
            axes.errorbar(
                [x],
                [e.estimate],
                yerr=[[e.estimate - e.low], [e.high - e.estimate]],
                marker=METHOD_MARKERS[method],
                color="tab:blue",
                capsize=3,
                linestyle="none",
                label=method.upper(),
            )
            axes.annotate(f"ESS {e.ess:.0f}", (x, e.high), fontsize=6, ha="center", va="bottom")
        for reason, methods in refused.items():
            text = textwrap.fill(f"{', '.join(methods)} refused: {reason}", REASON_WIDTH)
            axes.annotate(
                text,
                (i, c.truth),
                xytext=(0, -8),
                textcoords="offset points",
                fontsize=6,
                ha="center",
                va="top",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
            )
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one entry per method
    axes.legend(unique.values(), unique.keys(), loc="upper right", fontsize=7)
    axes.set_xticks(range(len(names)), [textwrap.fill(n, 28) for n in names], fontsize=8)
    axes.set_xlim(-0.6, len(names) - 0.4)
    if any(not e.supported for c in ev.candidates for e in c.estimates.values()):
        low, high = axes.get_ylim()
        axes.set_ylim(low - 0.25 * (high - low), high)  # room for a refusal under its truth
    axes.set_ylabel("click-through rate")
    axes.grid(alpha=0.3, axis="y")


def _plot_apprentice(axes: Axes, tour: Tour) -> None:
    ap = tour.apprentice
    axes.set_title(f"Apprentice mode ({ap.decisions} decisions, baseline {ap.baseline})")
    if ap.agreement is None or ap.baseline_reward is None or ap.policy_range is None:
        axes.text(0.5, 0.5, "no apprentice report", ha="center", va="center")
        return
    measured = ((2, ap.agreement, ap.truth_agreement), (1, ap.baseline_reward, ap.truth_baseline))
    for y, interval, truth in measured:
        axes.errorbar(
            [interval.mean],
            [y],
            xerr=[[interval.mean - interval.low], [interval.high - interval.mean]],
            marker="o",
            color="tab:blue",
            capsize=4,
            label="measured, with its interval" if y == 2 else None,
        )
        axes.plot([truth], [y], marker="x", markersize=10, color="black", linestyle="none")
    low, high = ap.policy_range
    axes.plot(
        [low, high],
        [0, 0],
        color="tab:orange",
        linewidth=6,
        solid_capstyle="butt",
        label="the model's range (what the log allows)",
    )
    axes.plot(
        [ap.truth_policy],
        [0],
        marker="x",
        markersize=10,
        color="black",
        linestyle="none",
        label="truth (agreement: the tour's own count)",
    )
    axes.set_yticks([0, 1, 2], ["model's reward", "baseline's reward", "agreement"])
    axes.set_ylim(-0.6, 2.6)
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("share of decisions / click-through rate")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7)
    axes.grid(alpha=0.3, axis="x")


def _failover_line(tour: Tour) -> str:
    f = tour.failover
    return (
        f"Failover forced ({f.reason!r}): {f.answered} of {f.sent} decisions answered 200, "
        f"{f.flagged} flagged with their fallback reason, {f.counted} counted by the API; "
        f"back on auto: {f.after_flagged} of {f.after_sent} flagged"
    )
