"""Ground-truth storefronts: simulated visitors with a known click model.

An `Environment` holds K banner actions, weighted visitor segments and a click-probability
matrix `ctr[segment][action]`. Visitors carry a JSON-able context with the segment and a
few noise features that do not change clicks, so a learner that finds the best banner per
segment can be scored against the oracle (`best_ctr`) and uniform random (`uniform_ctr`).
Everything is pure: randomness comes from an explicit `numpy.random.Generator`.

A storefront may also run under business constraints (engine.constraints): with
`inventory`, every action carries a SKU in its metadata (`sku(catalog, action_id)`) and
is shown only while its stock is above 0; with `cap`, each action is shown to a user at
most `cap` times per hour. Caps only bite when users come back, so `visitor(rng, users)`
draws from a bounded pool of user ids, split across the segments by their weights.

A storefront with `browsing` (the `intent` one) hides the segment from the context: each
returning user browses in sessions, each session has one intent (a product category, a new
one each session), and what tells a learner the intent is the behaviour that precedes a
decision, product views of that category, posted to the feature store (`sim.shoppers`
plays those users). The named storefronts are in `sim.environments`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from engine.caps import MAX_CAP_LIMIT
from engine.errors import InvalidInput
from engine.learning import DEFAULT_INTERACTIONS
from sim.checks import check_int, check_range, check_unique

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
DEVICE_WEIGHTS: tuple[float, ...] = (0.6, 0.32, 0.08)
PAGES: tuple[str, ...] = ("home", "category", "search", "product")
PAGE_WEIGHTS: tuple[float, ...] = (0.4, 0.25, 0.2, 0.15)
BRANDS: tuple[str, ...] = ("acme", "northwind", "summit", "peak")
USERS_PER_SEGMENT = 100_000
MAX_VISITS = 100  # per session
MAX_VIEWS = 20  # per visit
MAX_PRODUCTS = 1000  # per category
SKU_FIELD = "sku"  # the metadata key holding an action's SKU (constraints.inventory)
CAP_GROUP = "creative"  # a metadata key unique per action: a group cap on it caps each action
CAP_NAME = "per-action-hourly"  # removals by the cap are reported as "cap:per-action-hourly"
CAP_WINDOW_SECONDS = 3600.0
MAX_CAP = MAX_CAP_LIMIT  # what a catalog's frequency cap accepts
_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Action:
    """One banner: its id and the features the learner sees."""

    id: str
    theme: str
    discount: float

    def __post_init__(self) -> None:
        if not self.id:
            raise InvalidInput("action id must be a non-empty string, got ''", field="id")
        if not self.theme:
            raise InvalidInput(f"action {self.id!r}: theme must be non-empty", field="theme")
        if not 0.0 <= self.discount < 1.0:
            raise InvalidInput(
                f"action {self.id!r}: discount must be in [0, 1), got {self.discount!r}",
                field="discount",
            )

    def features(self) -> dict[str, object]:
        banner = {"theme": self.theme, "discount": self.discount, "creative": self.id}
        return {"banner": banner}

    def title(self) -> str:
        percent = round(self.discount * 100)
        return f"{self.theme.capitalize()} banner, {percent}% off"


@dataclass(frozen=True, slots=True)
class Segment:
    """A kind of visitor and the share of traffic it makes up."""

    name: str
    weight: float

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("segment name must be a non-empty string, got ''", field="name")
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise InvalidInput(
                f"segment {self.name!r}: weight must be a finite number > 0, got {self.weight!r}",
                field="weight",
            )


@dataclass(frozen=True, slots=True)
class Visitor:
    """One visit. With browsing, `segment` is the session's intent (not in `context`),
    `behaviour` the events to post before deciding, and `session_events` how many events
    the session holds once they are in (what a fresh read of the session counts)."""

    segment: str
    user_id: str
    context: dict[str, object]
    session_id: str | None = None
    behaviour: tuple[dict[str, object], ...] = ()
    session_events: int = 0


@dataclass(frozen=True, slots=True)
class Browsing:
    """How visitors browse a storefront whose context hides the segment: `users` returning
    users; sessions of `visits` visits (an inclusive range); each visit `views` product
    views of the session's intent category just before its decision, among `products`
    products per category."""

    users: int = 200
    visits: tuple[int, int] = (1, 4)
    views: tuple[int, int] = (1, 2)
    products: int = 12

    def __post_init__(self) -> None:
        check_int("users", self.users, 1, USERS_PER_SEGMENT)
        check_range("visits", self.visits, MAX_VISITS)
        check_range("views", self.views, MAX_VIEWS)
        check_int("products", self.products, 1, MAX_PRODUCTS)


@dataclass(frozen=True)
class Environment:
    """A simulated storefront; `ctr[i][j]` is the click probability of segment i on action j."""

    name: str
    actions: tuple[Action, ...]
    segments: tuple[Segment, ...]
    ctr: tuple[tuple[float, ...], ...]
    # Named, not the catalog default (optimistic RegCB): the simulator reports a probe of
    # each segment's pmf after the run, which a greedy policy reads as 0 or 1
    # (docs/decisions/default-policy.md); squarecb's pmf follows its estimated gaps.
    exploration: str = "squarecb"
    exploration_parameters: tuple[tuple[str, float], ...] = ()  # e.g. (("epsilon", 0.1),)
    interactions: tuple[str, ...] = DEFAULT_INTERACTIONS
    reward_wait_seconds: float = 1.0
    browsing: Browsing | None = None  # the segment is an intent shown only by behaviour

    def __post_init__(self) -> None:
        check_unique("action id", [a.id for a in self.actions])
        check_unique("segment name", [s.name for s in self.segments])
        _check_weights(self.segments)
        _check_matrix(self.ctr, len(self.segments), len(self.actions))
        if not (math.isfinite(self.reward_wait_seconds) and self.reward_wait_seconds > 0):
            raise InvalidInput(
                f"reward_wait_seconds must be a finite number > 0, "
                f"got {self.reward_wait_seconds!r}",
                field="reward_wait_seconds",
            )

    @property
    def action_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.actions)

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def matrix(self) -> np.ndarray[tuple[int, int], np.dtype[np.float64]]:
        """A fresh copy of the click-probability matrix (segments x actions)."""
        return np.array(self.ctr, dtype=np.float64)

    def weights(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        return np.array([s.weight for s in self.segments], dtype=np.float64)

    def catalog_body(
        self, name: str, *, inventory: bool = False, cap: int | None = None
    ) -> dict[str, object]:
        """The JSON body for `PUT /v1/catalogs/{name}`.

        `inventory` gives every action a SKU (metadata "sku") and adds an inventory
        constraint (shown while stock > 0; a SKU without a stock level counts as in stock);
        `cap` adds a per-user frequency cap of `cap` exposures per action per hour. Without
        either the body has no "constraints" key, exactly as before.
        """
        if not name:
            raise InvalidInput("catalog name must be a non-empty string, got ''", field="name")
        _check_cap(cap)
        body: dict[str, object] = {
            "actions": [
                self._action_body(action, name, inventory, cap is not None)
                for action in self.actions
            ],
            "learning": self._learning_body(),
        }
        constraints = _constraints_body(inventory, cap)
        if constraints:
            body["constraints"] = constraints
        return body

    def sku(self, catalog: str, action_id: str) -> str:
        """The SKU of an action in a catalog with inventory: unique per catalog and action."""
        self._action_index(action_id)
        return f"{catalog}:{action_id}"

    def user_pool(self, users: int) -> tuple[int, ...]:
        """How many of `users` user ids each segment gets: proportional to its weight, at
        least one each (largest remainders), summing to `users`."""
        n = len(self.segments)
        if isinstance(users, bool) or not isinstance(users, int) or not n <= users:
            raise InvalidInput(
                f"users must be an integer >= {n} (one per segment at least), got {users!r}",
                field="users",
            )
        if users > USERS_PER_SEGMENT:
            raise InvalidInput(
                f"users must be at most {USERS_PER_SEGMENT}, got {users!r}", field="users"
            )
        spare = users - n
        shares = self.weights() * spare
        sizes = [1 + math.floor(float(x)) for x in shares]
        order = np.argsort(-(shares - np.floor(shares)), kind="stable")
        for i in order[: users - sum(sizes)]:
            sizes[int(i)] += 1
        return tuple(sizes)

    def visitor(self, rng: np.random.Generator, users: int | None = None) -> Visitor:
        """A random visitor; with `users`, one of a pool of that many returning user ids
        (see `user_pool`), else one of `USERS_PER_SEGMENT` per segment."""
        if self.browsing is not None:
            raise InvalidInput(
                f"environment {self.name!r} has sessions: draw its visits from Shoppers",
                field="env",
            )
        sizes = self.user_pool(users) if users is not None else None
        index = int(rng.choice(len(self.segments), p=self.weights()))
        segment = self.segments[index].name
        size = USERS_PER_SEGMENT if sizes is None else sizes[index]
        user = index * USERS_PER_SEGMENT + int(rng.integers(size))
        device = DEVICES[int(rng.choice(len(DEVICES), p=DEVICE_WEIGHTS))]
        page = PAGES[int(rng.choice(len(PAGES), p=PAGE_WEIGHTS))]
        return Visitor(segment, f"u{user:07d}", _context(segment, device, page))

    def click_probability(self, visitor: Visitor, action_id: str) -> float:
        return self.ctr[self._segment_index(visitor.segment)][self._action_index(action_id)]

    def best_action(self, segment: str) -> str:
        row = self.ctr[self._segment_index(segment)]
        return self.actions[int(np.argmax(row))].id

    def best_available(self, segment: str, available: Collection[str]) -> str | None:
        """The segment's best action among `available` ids; None when none is available."""
        row = self.ctr[self._segment_index(segment)]
        best = max(
            (j for j, action in enumerate(self.actions) if action.id in available),
            key=lambda j: row[j],
            default=None,
        )
        return None if best is None else self.actions[best].id

    def best_ctr(self) -> float:
        """Expected CTR of the oracle that always shows each segment its best action."""
        return float(self.weights() @ self.matrix().max(axis=1))

    def uniform_ctr(self) -> float:
        """Expected CTR of choosing uniformly at random among all actions."""
        return float(self.weights() @ self.matrix().mean(axis=1))

    def segment_context(self, segment: str) -> dict[str, object]:
        """A representative context for probing what the learner shows a segment (with
        browsing, the same for every segment: only behaviour tells them apart)."""
        self._segment_index(segment)
        if self.browsing is not None:
            return anonymous_context(DEVICES[0], PAGES[0])
        return _context(segment, DEVICES[0], PAGES[0])

    def views(
        self,
        rng: np.random.Generator,
        intent: str,
        user_id: str,
        session_id: str,
        n: int,
        device: str | None = None,
    ) -> tuple[dict[str, object], ...]:
        """`n` product views of the intent's category: behaviour events for POST /v1/events."""
        browsing = self._browsing()
        self._segment_index(intent)
        check_int("n", n, 1, MAX_VIEWS)
        out = []
        for _ in range(n):
            k = int(rng.integers(browsing.products))
            brand = BRANDS[int(rng.integers(len(BRANDS)))]
            price = float(round(rng.uniform(20.0, 200.0)))
            product = {"id": f"{intent}-{k:03d}", "category": intent, "brand": brand}
            event: dict[str, object] = {
                "type": "product_view",
                "user_id": user_id,
                "session_id": session_id,
                "product": {**product, "price": price},
            }
            if device is not None:
                event["device"] = device
            out.append(event)
        return tuple(out)

    def _browsing(self) -> Browsing:
        if self.browsing is None:
            raise InvalidInput(
                f"environment {self.name!r} has no sessions (no browsing behaviour)", field="env"
            )
        return self.browsing

    def _action_body(
        self, action: Action, catalog: str, inventory: bool = False, capped: bool = False
    ) -> dict[str, object]:
        metadata = {"title": action.title(), "simulation": self.name, "catalog": catalog}
        if inventory:
            metadata[SKU_FIELD] = self.sku(catalog, action.id)
        if capped:
            metadata[CAP_GROUP] = action.id
        return {"id": action.id, "features": action.features(), "metadata": metadata}

    def _learning_body(self) -> dict[str, object]:
        return {
            "exploration": {"algorithm": self.exploration, **dict(self.exploration_parameters)},
            "interactions": list(self.interactions),
            "reward_wait_seconds": self.reward_wait_seconds,
            "default_reward": 0.0,
            "aggregation": "earliest",
        }

    def _segment_index(self, segment: str) -> int:
        names = self.segment_names
        if segment not in names:
            raise InvalidInput(
                f"unknown segment {segment!r}; expected one of {', '.join(names)}",
                field="segment",
            )
        return names.index(segment)

    def _action_index(self, action_id: str) -> int:
        ids = self.action_ids
        if action_id not in ids:
            raise InvalidInput(
                f"unknown action {action_id!r} in environment {self.name!r}", field="action_id"
            )
        return ids.index(action_id)


def _constraints_body(inventory: bool, cap: int | None) -> dict[str, object]:
    out: dict[str, object] = {}
    if inventory:
        out["inventory"] = {"sku_field": SKU_FIELD, "threshold": 0, "unknown": "in_stock"}
    if cap is not None:
        out["frequency_caps"] = [
            {
                "name": CAP_NAME,
                "group": CAP_GROUP,
                "limit": cap,
                "window_seconds": CAP_WINDOW_SECONDS,
            }
        ]
    return out


def _check_cap(cap: int | None) -> None:
    if cap is None:
        return
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAP:
        raise InvalidInput(f"cap must be an integer in [1, {MAX_CAP}], got {cap!r}", field="cap")


def _context(segment: str, device: str, page: str) -> dict[str, object]:
    return {"user": {"segment": segment, "device": device}, "page": page}


def anonymous_context(device: str, page: str) -> dict[str, object]:
    return {"user": {"device": device}, "page": page}


def _check_weights(segments: Sequence[Segment]) -> None:
    total = math.fsum(s.weight for s in segments)
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise InvalidInput(f"segment weights must sum to 1, got {total!r}", field="segments")


def _check_matrix(ctr: Sequence[Sequence[float]], rows: int, cols: int) -> None:
    if len(ctr) != rows or any(len(row) != cols for row in ctr):
        shape = [len(row) for row in ctr]
        raise InvalidInput(
            f"ctr must have {rows} rows (segments) of {cols} values (actions), "
            f"got row lengths {shape}",
            field="ctr",
        )
    for i, row in enumerate(ctr):
        for j, p in enumerate(row):
            if not 0.0 < p < 1.0:
                raise InvalidInput(
                    f"ctr[{i}][{j}] must be a probability in (0, 1), got {p!r}", field="ctr"
                )
