"""What one simulated run is: `SimConfig`, validated when it is made.

The options of `loopwise simulate` and of the tests that play a storefront: the server and
catalog, how many visitors from how many workers, and the optional constraints (stock,
caps, a pool of returning users) and behaviour (the feature store, the dwell before a
decision). Everything that can be refused is refused here, with the field it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import InvalidInput
from sim.environments import ENVIRONMENT_NAMES, environment
from sim.storefront import MAX_CAP

DEFAULT_CAP_USERS = 200  # the user pool when a cap is set without `users`
MAX_STOCK = 1_000_000_000
MAX_DWELL_S = 60.0


@dataclass(frozen=True)
class SimConfig:
    base_url: str
    catalog: str = "sim"
    env: str = "segments"
    decisions: int = 3000
    concurrency: int = 8
    seed: int = 0
    window: int = 200
    api_key: str | None = None
    setup_catalog: bool = True
    uniform: bool = False  # the same storefront against a uniform-random policy (baseline)
    exploration_floor: float = 0.0  # catalog constraint: every banner keeps >= floor/K
    exploration: str | None = None  # the catalog's algorithm (None: the storefront's own)
    stock: int | None = None  # initial units per banner; each click buys one
    restock_after: float | None = None  # seconds after a sell-out to restock to `stock`
    cap: int | None = None  # at most this many exposures per banner per user per hour
    users: int | None = None  # a pool of returning user ids (default with a cap: 200)
    feature_store: bool = True  # False: the catalog declares "features": [] (store off)
    dwell_s: float = 0.0  # with behaviour: seconds from a visit's views to its decision

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"base_url must start with http:// or https://, got {self.base_url!r}",
                field="base_url",
            )
        if not self.catalog:
            raise InvalidInput("catalog must be a non-empty name, got ''", field="catalog")
        if self.env not in ENVIRONMENT_NAMES:
            raise InvalidInput(
                f"env must be one of {', '.join(ENVIRONMENT_NAMES)}, got {self.env!r}",
                field="env",
            )
        for name in ("decisions", "concurrency", "window"):
            _check_positive(name, getattr(self, name))
        if self.seed < 0:
            raise InvalidInput(f"seed must be an integer >= 0, got {self.seed!r}", field="seed")
        if not 0.0 <= self.exploration_floor <= 1.0:
            raise InvalidInput(
                f"exploration_floor must be in [0, 1], got {self.exploration_floor!r}",
                field="exploration_floor",
            )
        if self.exploration == "":
            raise InvalidInput(
                "exploration must be None or an algorithm name, got ''", field="exploration"
            )
        if self.api_key == "":
            raise InvalidInput("api_key must be None or a non-empty key, got ''", field="api_key")
        self._check_constraints()
        self._check_behaviour()

    def _check_behaviour(self) -> None:
        wait = self.dwell_s
        if isinstance(wait, bool) or not isinstance(wait, int | float):
            raise InvalidInput(
                f"dwell_s must be a number of seconds, got {wait!r}", field="dwell_s"
            )
        if not (math.isfinite(wait) and 0.0 <= wait <= MAX_DWELL_S):
            raise InvalidInput(
                f"dwell_s must be in [0, {MAX_DWELL_S:g}] seconds, got {wait!r}", field="dwell_s"
            )
        if environment(self.env, self.seed).browsing is None:
            return
        if self.constrained:
            raise InvalidInput(
                f"the {self.env!r} storefront does not run under stock or caps", field="env"
            )
        users = self.user_pool
        if users is not None and users < self.concurrency:
            raise InvalidInput(
                f"users must be at least concurrency ({self.concurrency}): each worker plays "
                f"its own users, got {users!r}",
                field="users",
            )

    def _check_constraints(self) -> None:
        if self.stock is not None:
            _check_positive("stock", self.stock)
            if self.stock > MAX_STOCK:
                raise InvalidInput(
                    f"stock must be at most {MAX_STOCK}, got {self.stock!r}", field="stock"
                )
        if self.restock_after is not None:
            wait = self.restock_after
            if isinstance(wait, bool) or not isinstance(wait, int | float):
                raise InvalidInput(
                    f"restock_after must be a number of seconds > 0, got {wait!r}",
                    field="restock_after",
                )
            if not (math.isfinite(wait) and wait > 0):
                raise InvalidInput(
                    f"restock_after must be a finite number of seconds > 0, got {wait!r}",
                    field="restock_after",
                )
            if self.stock is None:
                raise InvalidInput(
                    "restock_after needs stock (there is nothing to restock without it)",
                    field="restock_after",
                )
        if self.cap is not None:
            _check_positive("cap", self.cap)
            if self.cap > MAX_CAP:
                raise InvalidInput(f"cap must be at most {MAX_CAP}, got {self.cap!r}", field="cap")
        if self.users is not None:
            _check_positive("users", self.users)
            environment(self.env, self.seed).user_pool(self.users)  # enough for every segment

    @property
    def constrained(self) -> bool:
        """Whether the run uses stock or caps (else it is the plain storefront)."""
        return self.stock is not None or self.cap is not None

    @property
    def user_pool(self) -> int | None:
        """How many returning user ids visitors are drawn from; None: fresh ones."""
        if self.users is not None:
            return self.users
        browsing = environment(self.env, self.seed).browsing
        if browsing is not None:
            return browsing.users
        return DEFAULT_CAP_USERS if self.cap is not None else None


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1, got {value!r}", field=name)
