"""A Personalizer loop is a Loopwise catalog of the same name, created on first use.

A new loop starts as a new Personalizer resource did: a 10-minute reward wait, default
reward 0, earliest reward, 20% exploration (`explorationPercentage` 0.2 is the catalog's
`constraints.exploration_floor`), online. It learns with Loopwise's default learner
(optimistic RegCB, greedy on optimistic estimates, so the floor is all its exploration:
epsilon-greedy with 0.2, as Personalizer's default policy `--epsilon 0.2` was) over
rewards declared in [-1, 1], the range Personalizer accepts, so no reward it accepted is
clipped. Its actions come with each rank request; the catalog stores none.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.serving.state import State
from engine.catalog import Catalog
from engine.errors import UnknownCatalog

REWARD_RANGE = {"min_reward": -1.0, "max_reward": 1.0}
JOIN_DEFAULTS: dict[str, Any] = {
    "reward_wait_seconds": 600.0,
    "default_reward": 0.0,
    "aggregation": "earliest",
}
EXPLORATION = 0.2


def default_learning() -> dict[str, Any]:
    """What a new loop learns with, and what DELETE /configurations/policy goes back to
    (with the loop's own reward settings kept)."""
    return {"exploration": {"algorithm": "regcbopt", **REWARD_RANGE}}


def new_body() -> dict[str, Any]:
    return {
        "actions": [],
        "learning": {**default_learning(), **JOIN_DEFAULTS},
        "constraints": {"exploration_floor": EXPLORATION},
    }


async def loop(st: State, name: str) -> Catalog:
    """The catalog of loop `name`, created with a new loop's settings if there is none."""
    try:
        return st.catalogs.latest(name)
    except UnknownCatalog:
        return await run_in_threadpool(_create, st, name)


def _create(st: State, name: str) -> Catalog:
    with st.catalogs.writes:  # two first requests at once create it once
        try:
            return st.catalogs.latest(name)
        except UnknownCatalog:
            catalog, _ = st.catalogs.put(name, new_body(), time.time())
            return catalog


def join_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The reward settings of a stored catalog body's `learning` (the service
    configuration's, kept when the policy changes)."""
    learning = body.get("learning") or {}
    keys = ("reward_wait_seconds", "default_reward", "aggregation")
    return {k: learning[k] for k in keys if k in learning}
