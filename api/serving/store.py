"""The feature store's read side for a decision: the user's and session's features from
this process's profile replica, and each action's popularity from the product replica."""

from __future__ import annotations

from collections.abc import Sequence

from api.serving.state import State
from engine import profileread, profiles
from engine.actions import Action, with_features
from engine.catalog import Catalog
from engine.features import Features, merge

MAX_CACHED = 50_000  # (catalog version, action) popularity entries; cleared when full

# (catalog, version, action id) -> (its product's key, the stats read, the second, the
# popularity features, the action with them joined, the action they were joined to: a
# request's own actions share ids with other requests' of other features)
_popularity: dict[
    tuple[str, int, str], tuple[bytes, object, int, Features | None, Action, Action]
] = {}
# catalog -> ((version, second, replica serial, replica changes), the joined actions of the
# whole catalog, their features)
_whole: dict[str, tuple[tuple[int, int, int, int], tuple[Action, ...], dict[str, Features]]] = {}


def profile_of(st: State, key: bytes) -> profiles.Profile | None:
    """A user's profile from this process's replica."""
    return _decoded(st, st.profiles.get(key))


def _decoded(st: State, raw: object) -> profiles.Profile | None:
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
    return profileread.features(catalog.features, user, session_id, now)


def with_context(stored: Features, request: Features) -> Features:
    """The context decided with: stored features, the request's own winning a clash."""
    return merge(stored, request) if stored else request


def popular(
    st: State, catalog: Catalog, offered: Sequence[Action], now: float
) -> tuple[Sequence[Action], dict[str, Features]]:
    """`offered` with each action's declared popularity features joined, and those
    features by action id (for the decision log; callers must not change it).

    For the whole catalog the answer is kept while the second and the popularity replica
    stay the same: most requests offer every action, and the per-action loop was most of
    this join's cost."""
    if not any(a.key == "action" for a in catalog.features) or not st.popularity.data:
        return offered, {}
    whole = offered is catalog.actions and not catalog.inline  # inline: each request's own
    version = (catalog.version, int(now), st.popularity.serial, st.popularity.changes)
    if whole:
        hit = _whole.get(catalog.name)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
    out, extra = _joined_all(st, catalog, offered, now)
    if whole:
        _whole[catalog.name] = (version, out, extra)
    return out, extra


def _joined_all(
    st: State, catalog: Catalog, offered: Sequence[Action], now: float
) -> tuple[tuple[Action, ...], dict[str, Features]]:
    if len(_popularity) > MAX_CACHED:
        _popularity.clear()
    extra: dict[str, Features] = {}
    out: list[Action] = []
    second = int(now)
    for action in offered:
        key = (catalog.name, catalog.version, action.id)
        hit = _popularity.get(key)
        if hit is not None and hit[5] is not action:
            hit = None
        product = hit[0] if hit is not None else product_of(action).encode()
        raw = st.popularity.get(product)
        if hit is None or hit[1] is not raw or hit[2] != second:
            joined = _joined(st, catalog, action, raw, now)
            hit = _popularity[key] = (product, raw, second, *joined, action)
        if hit[3] is None:
            out.append(action)
        else:
            extra[action.id] = hit[3]
            out.append(hit[4])
    return tuple(out), extra


def _joined(
    st: State, catalog: Catalog, action: Action, raw: object, now: float
) -> tuple[Features | None, Action]:
    """An action's popularity features (from its product's stats `raw`, as replicated) and
    the action with them joined. Computed at most once per second per action while the
    stats stay the same object: every request shows the same popular products, and what a
    decision used is logged with it."""
    stats = _decoded(st, raw)
    values = profileread.action_features(catalog.features, {action.id: stats}, now).get(action.id)
    return values, with_features(action, values)


def product_of(action: Action) -> str:
    """The product an action shows: its `metadata.product_id`, else its id."""
    product = action.metadata.get("product_id")
    return product if isinstance(product, str) else action.id
