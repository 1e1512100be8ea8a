"""The feature store's read side for a decision: the user's and session's features from
this process's profile replica, and each action's popularity from the product replica."""

from __future__ import annotations

from collections.abc import Sequence

from api.state import State
from engine import profiles
from engine.catalog import Action, Catalog, with_features
from engine.features import Features, merge

MAX_CACHED = 50_000  # actions with joined features kept; cleared when full

# (catalog, version, action id, joined values) -> the action with them joined: its VW
# body is built once per popularity step, not per request
_joined: dict[tuple[str, int, str, tuple[tuple[str, float | str], ...]], Action] = {}


def profile_of(st: State, key: bytes, replica: str = "profiles") -> profiles.Profile | None:
    raw = (st.profiles if replica == "profiles" else st.popularity).get(key)
    if not isinstance(raw, bytes):
        return None
    try:
        return profiles.decode(raw)
    except ValueError:  # msgspec.DecodeError: a foreign value in the changelog
        st.metrics.counts["unreadable_profiles"] += 1
        return None


def user_features(
    st: State, catalog: Catalog, user_id: str | None, session_id: str | None, now: float
) -> Features:
    """The catalog's declared user and session features (empty without a user id)."""
    if user_id is None or not catalog.features:
        return {}
    user = profile_of(st, profiles.key(user_id))
    return profiles.features(catalog.features, user, session_id, now)


def with_context(stored: Features, request: Features) -> Features:
    """The context decided with: stored features, the request's own winning a clash."""
    return merge(stored, request) if stored else request


def popular(
    st: State, catalog: Catalog, offered: Sequence[Action], now: float
) -> tuple[list[Action], dict[str, Features]]:
    """`offered` with each action's declared popularity features joined, and those
    features by action id (for the decision log)."""
    if not any(a.key == "action" for a in catalog.features) or not st.popularity.data:
        return list(offered), {}
    stats = {a.id: profile_of(st, product_of(a).encode(), "popularity") for a in offered}
    extra = profiles.action_features(catalog.features, stats, now)
    if not extra:
        return list(offered), {}
    if len(_joined) > MAX_CACHED:
        _joined.clear()
    out: list[Action] = []
    for action in offered:
        values = extra.get(action.id)
        if values is None:
            out.append(action)
            continue
        flat = tuple(sorted(values[profiles.NAMESPACES["action"]].items()))
        key = (catalog.name, catalog.version, action.id, flat)
        joined = _joined.get(key)
        if joined is None:
            joined = _joined[key] = with_features(action, values)
        out.append(joined)
    return out, extra


def product_of(action: Action) -> str:
    """The product an action shows: its `metadata.product_id`, else its id."""
    product = action.metadata.get("product_id")
    return product if isinstance(product, str) else action.id
