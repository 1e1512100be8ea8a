"""The returning users of a storefront with browsing (the `intent` one), each in a session
with an intent. `Shoppers` plays them: deterministic, its only state the sessions, its
randomness the caller's generator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput
from sim.checks import check_int, check_unique
from sim.storefront import (
    DEVICE_WEIGHTS,
    DEVICES,
    PAGE_WEIGHTS,
    PAGES,
    USERS_PER_SEGMENT,
    Environment,
    Visitor,
    anonymous_context,
)


@dataclass
class _Shopper:
    user_id: str
    device: str
    sessions: int = 0
    intent: str | None = None
    visits_left: int = 0
    events: int = 0  # in the current session


class Shoppers:
    """The returning users of a storefront with browsing, each in a session with an intent.

    `visit(rng)` picks one of `user_ids` at random; a user whose session has had its visits
    starts a new one (id `<user>-s<n>`) with a new intent, never the previous one. Give each
    concurrent worker its own `Shoppers` over its own users: a user's visits (views, then
    decision) then happen one after the other, as a real visitor's do."""

    def __init__(self, env: Environment, user_ids: Sequence[str], rng: np.random.Generator) -> None:
        if env.browsing is None:
            raise InvalidInput(f"environment {env.name!r} has no sessions to play", field="env")
        self.env, self.browsing = env, env.browsing
        if not user_ids:
            raise InvalidInput("Shoppers needs at least one user id, got none", field="users")
        check_unique("user id", list(user_ids))
        self._users = [
            _Shopper(u, DEVICES[int(rng.choice(len(DEVICES), p=DEVICE_WEIGHTS))]) for u in user_ids
        ]

    def visit(self, rng: np.random.Generator) -> Visitor:
        user = self._users[int(rng.integers(len(self._users)))]
        if user.visits_left == 0:
            self._new_session(user, rng)
        intent = str(user.intent)
        user.visits_left -= 1
        low, high = self.browsing.views
        session = _session_id(user)
        views = self.env.views(
            rng, intent, user.user_id, session, int(rng.integers(low, high + 1)), user.device
        )
        user.events += len(views)
        page = PAGES[int(rng.choice(len(PAGES), p=PAGE_WEIGHTS))]
        context = anonymous_context(user.device, page)
        return Visitor(intent, user.user_id, context, session, views, user.events)

    def _new_session(self, user: _Shopper, rng: np.random.Generator) -> None:
        weights = self.env.weights()
        if user.intent is not None:  # a new session, a new intent
            weights[self.env.segment_names.index(user.intent)] = 0.0
            weights /= weights.sum()
        user.intent = self.env.segment_names[int(rng.choice(len(weights), p=weights))]
        low, high = self.browsing.visits
        user.visits_left = int(rng.integers(low, high + 1))
        user.sessions += 1
        user.events = 0


def shopper_ids(count: int, prefix: str = "") -> tuple[str, ...]:
    """`count` user ids for Shoppers: `<prefix>u0000000`, ..."""
    check_int("users", count, 1, USERS_PER_SEGMENT)
    return tuple(f"{prefix}u{i:07d}" for i in range(count))


def _session_id(user: _Shopper) -> str:
    return f"{user.user_id}-s{user.sessions:04d}"
