"""Evaluation and optimisation jobs from the serving process's side: the spec a job is
started with, the optimisations a catalog's schedule starts (engine.optimize.Schedule), and
promoting what a finished optimisation chose.

A scheduled run's job id is the start of its period (`20261207T000000-scheduled`), and
a job's directory is created exclusively, so a period runs once even across restarts of
the API process; a period missed while the process was down runs once when it is back.
A catalog with an optimisation still running starts no other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from engine.catalog import Catalog
from engine.errors import EngineError
from engine.learning import learning_json
from engine.optimize import CURRENT, GRID, Schedule, candidate_alpha

if TYPE_CHECKING:
    from api.serving.state import State

log = logging.getLogger(__name__)
SCHEDULED = "scheduled"
ALPHA = 0.05  # a scheduled run's chance of promoting on luck, over all its candidates


def job_spec(
    st: State,
    catalog: Catalog,
    window: tuple[float, float],
    alpha: float,
    candidates: object,
    extra: dict[str, object],
) -> dict[str, object]:
    """What `loopwise evaluate` is started with: the window, the candidates, every version
    of the catalog (rows are judged with the version that decided them), where the log is."""
    versions = [
        c.to_json()
        for v in range(1, catalog.version + 1)
        if (c := st.catalogs.version(catalog.name, v)) is not None
    ]
    return {
        "catalog": catalog.name,
        "since": window[0],
        "until": window[1],
        "alpha": alpha,
        "candidates": candidates,
        "catalog_versions": versions,
        "bootstrap": st.settings.bootstrap,
        "topic": st.settings.topic("training"),
        "partitions": st.settings.partitions,
        **extra,
    }


def with_current(catalog: Catalog, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An optimisation's candidates: the catalog's own settings first, as `current`."""
    return [{"name": CURRENT, "learning": learning_json(catalog.learning)}, *candidates]


def start_scheduled(st: State, catalog: Catalog, schedule: Schedule, now: float) -> str | None:
    """Start this period's optimisation of `catalog` unless it ran or one is running; its id."""
    if catalog.name in st.jobs.optimizing.values():
        return None
    slot = schedule.slot(now)
    start = time.strftime("%Y%m%dT%H%M%S", time.gmtime(slot * schedule.every_seconds))
    job_id = f"{start}-{SCHEDULED}"
    if st.jobs.exists(catalog.name, job_id):
        return None
    candidates = with_current(catalog, [dict(c) for c in schedule.candidates or GRID])
    extra: dict[str, object] = {
        "kind": "optimize",
        "promote": schedule.promote,
        "scheduled": True,
        "family_alpha": ALPHA,
    }
    alpha = candidate_alpha(ALPHA, len(candidates) - 1)
    spec = job_spec(st, catalog, (now - schedule.window_seconds, now), alpha, candidates, extra)
    try:
        st.jobs.start(catalog.name, spec, job_id)
    except FileExistsError:  # started meanwhile
        return None
    log.info("catalog %s: scheduled optimisation %s started", catalog.name, job_id)
    return job_id


async def schedule_optimizations(st: State, every: float = 1.0) -> None:
    """Background: start every catalog's scheduled optimisations as their periods come."""
    while True:
        await asyncio.sleep(every)
        now = time.time()
        for name in st.catalogs.names():
            try:
                catalog = st.catalogs.latest(name)
            except EngineError:  # deleted meanwhile
                continue
            if catalog.optimization is not None:
                start_scheduled(st, catalog, catalog.optimization, now)


async def apply_optimizations(st: State, every: float = 1.0) -> None:
    """Background: promote what finished optimisations chose, each a new catalog version."""
    while True:
        await asyncio.sleep(every)
        for catalog, job_id, learning in st.jobs.promotions():
            if learning is None:
                st.jobs.applied(catalog, job_id, {"promoted": False})
                continue

            def promote(body: dict[str, object], learning: dict[str, object] = learning) -> None:
                body["learning"] = learning

            try:
                c = await asyncio.to_thread(st.catalogs.edit, catalog, promote, time.time())
            except EngineError as exc:  # the catalog was deleted or changed meanwhile
                st.jobs.applied(catalog, job_id, {"promoted": False, "error": exc.detail})
                continue
            log.warning(
                "catalog %s: optimisation %s promoted new learning settings", catalog, job_id
            )
            st.jobs.applied(catalog, job_id, {"promoted": True, "catalog_version": c.version})
