"""GET /v1/catalogs/{name}/performance[.svg]: what the catalog's decisions earned over time,
per slot, beside a uniform choice among the same eligible actions (engine.performance),
with the model's freshness and what this process accepted and learned.

The series come from the training log, so every serving process answers the same; the
counts of accepted decisions and rewards are this process's own.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import requests
from api.requests import PerformanceQuery
from api.resultsvg import results_svg
from api.serving.metrics import quantiles
from api.serving.state import of


async def get_performance(request: Request) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = st.catalogs.latest(request.path_params["name"])
    query = requests.convert(dict(request.query_params), PerformanceQuery, strict=False)
    report = st.replica.performance.report(catalog.name, query.every, query.since, query.alpha)
    if request.url.path.endswith(".svg"):
        return Response(results_svg(_as_arms(report)), media_type="image/svg+xml")
    model = st.replica.policy(catalog)
    counts = st.metrics.counts
    report["model"] = {
        "learned": model.policy.learned,
        "freshness_seconds": quantiles(list(st.replica.freshness.get(catalog.name, ()))),
    }
    report["this_process"] = {  # since it started, every catalog
        "decisions": counts["decisions"],
        "rewards_accepted": counts["rewards_accepted"],
        "learned": st.replica.counts["learned"],
    }
    return JSONResponse(report)


def _as_arms(report: dict[str, Any]) -> dict[str, Any]:
    """The report as engine.results shapes an experiment's, for the same picture: one
    line for the served value and one for uniform's, per slot."""
    arms = []
    for slot in report["slots"]:
        name = slot["slot"] or "decisions"
        for key, label in (("served", "served"), ("uniform", "uniform (snips)")):
            series = [
                [p["start"], p["decisions"], p[key]["estimate"], p[key]["low"], p[key]["high"]]
                for p in slot["series"]
                if p[key]["supported"]
            ]
            total = slot["total"][key]
            arms.append(
                {
                    "arm": f"{name}: {label}",
                    "status": "per slot" if slot["slot"] else "single decisions",
                    "decisions": slot["total"]["decisions"],
                    "mean": total["estimate"] if total["supported"] else float("nan"),
                    "series": series,
                }
            )
    return {
        "catalog": report["catalog"],
        "experiment": f"served vs uniform, every {report['every']} s",
        "alpha": report["alpha"],
        "reward_range": [0.0, 1.0],
        "arms": arms,
    }
