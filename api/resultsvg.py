"""An experiment's results as an SVG picture: per arm, its mean reward over time with its
anytime-valid interval as a band, and the difference to control at the end.

SVG, drawn here, because the server runs without a plotting library (matplotlib is the
simulator's extra) and a browser or the dashboard shows it as it is.
"""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, PLOT, LEFT, RIGHT, TOP, BOTTOM = 760, 380, 64, 24, 40, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def results_svg(report: dict[str, Any]) -> bytes:
    arms: list[dict[str, Any]] = report["arms"]
    height = PLOT + 18 * len(arms) + 8  # the legend below the plot
    points = [p for a in arms for p in a["series"]]
    lo, hi = (float(v) for v in report["reward_range"])
    t0 = min((p[0] for p in points), default=0.0)
    t1 = max((p[0] for p in points), default=1.0)
    y0 = min((p[3] for p in points), default=lo)
    y1 = max((p[4] for p in points), default=hi)
    if y1 <= y0:
        y0, y1 = lo, hi
    span_t = max(t1 - t0, 1e-9)

    def x(t: float) -> float:
        return LEFT + (t - t0) / span_t * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (y1 - v) / (y1 - y0) * (PLOT - TOP - BOTTOM)

    title = f"{report['catalog']} / {report['experiment']}: mean reward per arm"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{PLOT - BOTTOM}" x2="{WIDTH - RIGHT}" '
        f'y2="{PLOT - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{PLOT - BOTTOM}" stroke="black"/>',
    ]
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    out.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{PLOT - 14}" text-anchor="middle">'
        f"time (s from the first result, to {span_t:.0f} s); bands: "
        f"{1 - float(report['alpha']):.0%} anytime-valid</text>"
    )
    for i, arm in enumerate(arms):
        colour = COLOURS[i % len(COLOURS)]
        series = arm["series"]
        if series:
            upper = " ".join(f"{x(p[0]):.1f},{y(p[4]):.1f}" for p in series)
            lower = " ".join(f"{x(p[0]):.1f},{y(p[3]):.1f}" for p in reversed(series))
            line = " ".join(f"{x(p[0]):.1f},{y(p[2]):.1f}" for p in series)
            out.append(f'<polygon points="{upper} {lower}" fill="{colour}" opacity="0.15"/>')
            out.append(
                f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        diff = arm.get("difference")
        label = f"{arm['arm']} ({arm['status']}) n={arm['decisions']} mean={arm['mean']:.3g}"
        if diff:
            label += f" diff {diff['mean']:+.3g} [{diff['low']:+.3g}, {diff['high']:+.3g}]"
        out.append(
            f'<text x="{LEFT}" y="{PLOT + 18 * i + 8}" fill="{colour}">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out).encode()
