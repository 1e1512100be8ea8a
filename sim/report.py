"""A simulated run in words: `summary` (the lines `loopwise simulate` prints) and
`constraint_setup` (the constraints of a run, for the plot's title)."""

from __future__ import annotations

import math

from sim.results import SimResult
from sim.storefront import CAP_WINDOW_SECONDS


def summary(result: SimResult) -> str:
    rate = result.decisions / result.elapsed_s if result.elapsed_s > 0 else 0.0
    last = result.ctr_by_window[-1][1] if result.ctr_by_window else result.overall_ctr
    lines = [
        f"{result.env}: {result.decisions} decisions, {result.clicks} clicks in "
        f"{result.elapsed_s:.1f} s ({rate:.0f}/s); decide latency p50 "
        f"{result.decide_latency_ms_p50:.1f} ms, p99 {result.decide_latency_ms_p99:.1f} ms",
        f"CTR {result.overall_ctr:.3f} overall, {last:.3f} in the last window; "
        f"oracle {result.best_ctr:.3f}, uniform random {result.uniform_ctr:.3f}"
        + _expected_part(result),
        _lift_line(result.overall_ctr, last, result.best_ctr, result.uniform_ctr),
        _probe_line(result.best_action_probability, result.n_actions),
    ]
    if result.served_best_late:
        shares = ", ".join(f"{s} {v:.2f}" for s, v in result.served_best_late.items())
        lines.append(f"served its best banner in the second half: {shares}")
    if result.constrained:
        lines.extend(_constraint_lines(result))
    if result.feature_store is not None:
        lines.extend(_behaviour_lines(result))
    return "\n".join(lines)


def _behaviour_lines(result: SimResult) -> list[str]:
    decisions = max(result.decisions, 1)
    store = "on (the catalog's features)" if result.feature_store else 'off ("features": [])'
    lines = [
        f"feature store {store}; {result.users} returning users; {result.events_posted} "
        f"behaviour events posted (p50 {result.event_latency_ms_p50:.1f} ms, p99 "
        f"{result.event_latency_ms_p99:.1f} ms); decisions {result.dwell_s:g} s after the views",
        f"decisions whose features held the visit's own views: {result.fresh} "
        f"({result.fresh / decisions:.0%}); only the session's earlier views: {result.stale} "
        f"({result.stale / decisions:.0%}); nothing of the session: {result.no_session} "
        f"({result.no_session / decisions:.0%}); any stored feature: {result.joined}",
    ]
    if result.store_ready_s is not None:
        lines.append(f"a first view reached the server in {result.store_ready_s:.1f} s")
    if result.probes:
        lines.append(f"probes that saw their own views: {result.probe_fresh} of {result.probes}")
    return lines


def _expected_part(result: SimResult) -> str:
    if result.expected_ctr is None or not result.expected_ctr_by_window:
        return ""
    last = result.expected_ctr_by_window[-1][1]
    return f"; expected CTR (click model) {result.expected_ctr:.3f}, {last:.3f} in the last window"


def _lift_line(overall: float, last: float, best: float, uniform: float) -> str:
    gap = best - uniform
    if gap <= 0 or not math.isfinite(gap):
        return "lift: undefined (the oracle is no better than uniform)"
    return (
        f"lift captured over uniform: {(overall - uniform) / gap:.0%} overall, "
        f"{(last - uniform) / gap:.0%} in the last window"
    )


def _probe_line(probabilities: dict[str, float], n_actions: int) -> str:
    uniform = f"{1.0 / n_actions:.3f}" if n_actions > 0 else "n/a"
    parts = ", ".join(f"{name} {p:.2f}" for name, p in probabilities.items())
    return f"best-action probability (1/K = {uniform}): {parts or 'not probed'}"


def _constraint_lines(result: SimResult) -> list[str]:
    decisions = result.decisions
    shown = result.shown if result.shown is not None else decisions
    share = result.nothing_eligible / decisions if decisions else 0.0
    removed = ", ".join(f"{reason} {n}" for reason, n in result.removed.items()) or "none"
    caps = sum(n for reason, n in result.removed.items() if reason.startswith("cap:"))
    lines = [
        "constraints: " + constraint_setup(result),
        f"nothing eligible (chosen: null): {result.nothing_eligible} of {decisions} "
        f"decisions ({share:.1%}); {shown} showed a banner",
        f"removed by reason (actions, summed over responses): {removed}; "
        f"cap removals {caps}, inventory removals {result.removed.get('inventory', 0)}",
    ]
    if result.stock is not None:
        lines.append(_stock_line(result))
    best, uniform = result.eligible_best_ctr, result.eligible_uniform_ctr
    if best is not None and uniform is not None:
        last = result.ctr_by_window[-1][1] if result.ctr_by_window else result.overall_ctr
        last_best = (
            result.eligible_best_by_window[-1][1] if result.eligible_best_by_window else best
        )
        gap = best - uniform
        lift = f"{(result.overall_ctr - uniform) / gap:.0%}" if gap > 0 else "undefined"
        lines.append(
            f"CTR per banner shown {result.overall_ctr:.3f} (last window {last:.3f}); oracle "
            f"among the eligible actions {best:.3f} (last window {last_best:.3f}), uniform "
            f"among them {uniform:.3f}; lift captured over that uniform: {lift}"
        )
    lines.append(_in_stock_probe_line(result))
    return lines


def constraint_setup(result: SimResult) -> str:
    """The constraints of a run in words, e.g. "stock 150 per banner (no restock), ..."."""
    parts = []
    if result.stock is not None:
        restock = (
            f"restocked {result.restock_after:g} s after selling out"
            if result.restock_after is not None
            else "no restock"
        )
        parts.append(f"stock {result.stock} per banner ({restock})")
    if result.cap is not None:
        parts.append(f"cap {result.cap} per banner per user per {CAP_WINDOW_SECONDS / 3600:g} h")
    if result.users is not None:
        parts.append(f"{result.users} returning users")
    return ", ".join(parts)


def _stock_line(result: SimResult) -> str:
    outs = ", ".join(f"{action} at decision {at}" for at, action in result.stock_outs)
    line = (
        f"stock-outs: {len(result.stock_outs)} ({outs or 'none'}); "
        f"{result.purchases} purchases; restocks {len(result.restocks)}; "
        f"sold out at the end: {', '.join(result.sold_out_at_end) or 'none'}"
    )
    if result.oversold:
        line += f"; {result.oversold} clicks on banners already sold out (inventory lag)"
    if result.stock_synced is False:
        line += "; the server did not confirm the final stock levels"
    return line


def _in_stock_probe_line(result: SimResult) -> str:
    uniform = f"{1.0 / result.n_in_stock:.3f}" if result.n_in_stock > 0 else "n/a"
    parts = []
    for segment, p in result.best_in_stock_probability.items():
        target = result.best_in_stock_action.get(segment)
        top = result.probe_top_action.get(segment)
        if target is None:
            parts.append(f"{segment}: nothing in stock")
            continue
        mark = "top" if top == target else f"top is {top}"
        best = result.overall_best_action.get(segment, target)
        note = "" if best == target else f", {best} sold out"
        parts.append(f"{segment}->{target} {p:.2f} ({mark}{note})")
    line = f"best in-stock action probability (1/K in stock = {uniform}): "
    line += ", ".join(parts) or "not probed"
    if result.probe_nothing_eligible:
        line += f"; {result.probe_nothing_eligible} probes had nothing eligible"
    if result.probe_saw_sold_out:
        line += f"; probes were offered sold-out {', '.join(result.probe_saw_sold_out)}"
    return line
