"""engine.profiles, profilefold and profileread: the invariants of the feature store's state
and of the features read from it.

Properties (Hypothesis) over random event sequences, in any order and with late and
slightly future events: the two-bucket window bounds, the size bounds whatever the input,
round trips, determinism, finiteness, scoping to the session asked for, order independence
of lifetime aggregates and VW-safety; then a worked example computed by hand and a table of
bad specs, each naming its field.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import featurespec, profilefold, profileread, profiles, vwformat
from engine.behaviour import (
    FUTURE_SLACK_SECONDS,
    MAX_TEXT,
    PRODUCT_TYPES,
    TYPES,
    BehaviourObserved,
    Product,
)
from engine.errors import InvalidInput, LimitExceeded
from engine.features import Features
from engine.featurespec import DEFAULT_SPEC, DIMENSIONS, WINDOWS, Aggregate, parse_spec, spec_json
from engine.profilefold import observe
from engine.profileread import features
from engine.profiles import MAX_CART, MAX_GROUPS, MAX_SESSIONS, RECENT, Profile

T = 1_700_000_000.0  # inside one 1 h, 24 h and 7 d bucket with T - 600; 5 m starts at T - 200
DAY = 86_400.0
SLACK = FUTURE_SLACK_SECONDS


def ev(
    kind: str,
    ts: float,
    product: str | None = None,
    category: str | None = None,
    brand: str | None = None,
    price: float | None = None,
    *,
    session: str | None = None,
    quantity: float = 1.0,
    revenue: float = 0.0,
    user: str = "u1",
    device: str | None = None,
    channel: str | None = None,
) -> BehaviourObserved:
    item = (
        None
        if product is None
        else Product(id=product, category=category, brand=brand, price=price)
    )
    return BehaviourObserved(
        kind=kind,
        user_id=user,
        session_id=session,
        ts=ts,
        product=item,
        quantity=quantity,
        revenue=revenue,
        device=device,
        channel=channel,
    )


def fold(events: Iterable[BehaviourObserved]) -> Profile:
    p: Profile | None = None
    for event in events:
        p = observe(p, event)
    assert p is not None
    return p


def sessions(user: Profile) -> dict[str, Profile]:
    """The session profiles a user holds, oldest first."""
    out = {sid: profiles.session_of(user, sid) for sid in user.sessions}
    return {sid: p for sid, p in out.items() if p is not None}


def every_profile(user: Profile) -> list[Profile]:
    return [user, *sessions(user).values()]


def groups(p: Profile) -> Counter[str]:
    """Values kept per "type|dimension"."""
    return Counter({kind: len(values) for kind, values in p.cells.items()})


def values_of(p: Profile, kind: str, dimension: str) -> set[str]:
    return set(p.cells.get(f"{kind}|{dimension}", {}))


def agg(name: str, **fields: object) -> Aggregate:
    """One aggregate, through the parser: the spec a catalog would declare."""
    return parse_spec([{"name": name, **fields}])[0]


# Every aggregation, dimension and scalar, for both keys: a superset of DEFAULT_SPEC.
FULL_SPEC: tuple[Aggregate, ...] = DEFAULT_SPEC + parse_spec(
    [
        {
            "name": f"{key}_{aggregation}_{by}_{window or 'life'}",
            "key": key,
            "aggregation": aggregation,
            "by": by,
        }
        | ({"window": window} if window else {})
        | ({"per": "product_view", "event": "add_to_cart"} if aggregation == "rate" else {})
        for key in ("user", "session")
        for aggregation, by, window in [
            ("count", "all", "5m"),
            ("count", "all", None),
            ("count", "product", None),
            ("sum", "brand", "24h"),
            ("sum", "all", None),
            ("mean", "category", None),
            ("mean", "all", "1h"),
            ("recency", "product", None),
            ("recency", "all", "5m"),
            ("last_n", "brand", None),
            ("rate", "category", "24h"),
            ("rate", "all", None),
        ]
    ]
    + [
        {"name": f"{key}_{scalar}", "key": key, "aggregation": "scalar", "scalar": scalar}
        for key in ("user", "session")
        for scalar in featurespec.SCALARS
    ]
)


# --- strategies -----------------------------------------------------------------------------

# `now` anywhere (realistic epochs), or exactly on a bucket boundary of every window but 7 d.
NOWS = st.floats(1.6e9, 1.8e9) | st.integers(5_400_000, 5_900_000).map(lambda k: k * 300.0)


def offsets() -> st.SearchStrategy[float]:
    """Event times relative to `now`: near each window's buckets, far back, or ahead."""
    near = [st.floats(-2.5 * width, 0.0) for width in WINDOWS.values()]
    return st.one_of(*near, st.floats(-15 * DAY, 0.0), st.floats(0.0, SLACK))


NASTY_TEXT = st.one_of(
    st.text(min_size=1, max_size=20),
    st.sampled_from(["|", ":", " ", "a|b", "a:b", "x y", "\n", "\r\n", "é", "日本", "=", "%"]),
    st.text(alphabet="|: \n\t=%aé", min_size=1, max_size=6),
)


@st.composite
def events(
    draw: st.DrawFn,
    now: float,
    values: st.SearchStrategy[str],
    sessions: st.SearchStrategy[str | None],
    max_size: int = 40,
    integral: bool = False,
) -> list[BehaviourObserved]:
    """A sequence of events of every type with times around `now`, in any order."""
    price_s = st.integers(0, 1000).map(float) if integral else st.floats(0, 1e6)
    qty_s = st.integers(1, 10).map(float) if integral else st.floats(0.01, 10_000)
    out = []
    for _ in range(draw(st.integers(1, max_size))):
        kind = draw(st.sampled_from(TYPES))
        has_product = kind in PRODUCT_TYPES or draw(st.booleans())
        out.append(
            ev(
                kind,
                now + draw(offsets()),
                draw(values) if has_product else None,
                draw(values | st.none()),
                draw(values | st.none()),
                draw(price_s | st.none()),
                session=draw(sessions),
                quantity=draw(qty_s),
                revenue=draw(price_s) if kind == "purchase" else 0.0,
                device=draw(st.sampled_from([None, "mobile", "desktop"])),
                channel=draw(st.sampled_from([None, "web", "app"])),
            )
        )
    return out


# --- windows: the two-bucket counter's bounds -----------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data(), now=NOWS)
def test_windowed_counts_stay_within_the_two_bucket_bounds(data: st.DataObject, now: float) -> None:
    """For each window W: count >= events in [floor(now/W)*W, now] and <= events of the
    buckets from floor(now/W) - 1 on (all inside (now - 2W, now + slack]; an event stamped
    ahead of `now` counts as now). The same bounds hold for sums; nothing is negative or
    above the lifetime count, which equals the events seen (3 categories: no eviction)."""
    timed = data.draw(
        st.lists(st.tuples(offsets(), st.sampled_from("abc"), st.integers(0, 100)), max_size=60)
    )
    seen = [ev("product_view", now + dt, "p", c, None, float(v)) for dt, c, v in timed]
    user = fold([ev("page_view", now - 30 * DAY), *seen])  # cells exist long before
    for name, width in WINDOWS.items():
        spec = [
            agg("n", event="product_view", by="category", window=name),
            agg("s", aggregation="sum", event="product_view", by="category", window=name),
            agg("life", event="product_view", by="category"),
        ]
        got = features(spec, user, None, now).get("user_features", {})
        now_bucket = math.floor(now / width)
        for category in "abc":
            mine = [
                (e.ts, float(v)) for e, (_, c, v) in zip(seen, timed, strict=True) if c == category
            ]
            low = [v for ts, v in mine if math.floor(ts / width) == now_bucket and ts <= now]
            high = [v for ts, v in mine if math.floor(ts / width) >= now_bucket - 1]
            assert len(high) <= sum(1 for ts, _ in mine if now - 2 * width < ts <= now + SLACK)
            count = float(got.get(f"n.{category}", 0.0))
            total = float(got.get(f"s.{category}", 0.0))
            lifetime = float(got.get(f"life.{category}", 0.0))
            assert len(low) <= count <= len(high), (name, category)
            assert sum(low) <= total <= sum(high), (name, category)
            assert 0.0 <= count <= lifetime == len(mine)


def test_a_future_event_does_not_discount_the_current_bucket() -> None:
    """Regression: five views 10 s ago, then one stamped 20 s ahead (within the accepted
    slack) in the next 5 m bucket; the five used to be weighted by the 3 % of the previous
    bucket still inside the window, so the 5 m count fell from 5 to 1.17."""
    now = T + 90  # 290 s into a 5 m bucket
    five = [ev("product_view", now - 10, "p", "c") for _ in range(5)]
    spec = [agg("n", event="product_view", window="5m")]
    assert features(spec, fold(five), None, now) == {"user_features": {"n": 5.0}}
    ahead = fold([*five, ev("product_view", now + 20, "p", "c")])
    assert features(spec, ahead, None, now) == {"user_features": {"n": 6.0}}


def test_late_events_count_in_their_bucket_and_expire() -> None:
    """An event that arrives after a newer one still counts if it is in the previous
    bucket; one older than that is only in the lifetime count."""
    spec = [agg("n", event="product_view", window="1h"), agg("life", event="product_view")]
    hour_start = math.floor(T / 3600) * 3600  # T is 800 s into its hour
    user = fold(
        [
            ev("product_view", T, "p"),
            ev("product_view", hour_start - 100, "p"),  # late, previous bucket, in the hour
            ev("product_view", hour_start - 3600 - 100, "p"),  # late, two buckets back
        ]
    )
    inside = 1 - (T - hour_start) / 3600
    got = features(spec, user, None, T)["user_features"]
    assert got["n"] == pytest.approx(1 + inside) and got["life"] == 3.0
    two_hours_later = features(spec, user, None, T + 7200)["user_features"]
    assert "n" not in two_hours_later and two_hours_later["life"] == 3.0


# --- bounds whatever the input --------------------------------------------------------------

ID_BYTES = 4 * 128  # ID_RE: up to 128 code points of up to 4 UTF-8 bytes
TEXT_BYTES = 4 * MAX_TEXT
FLOAT = 9  # msgpack float64 or (u)int64 with its type byte
HEADER = 5  # the largest msgpack str/array/map header we could need


def _str(n: int) -> int:
    return HEADER + n


def size_bound() -> int:
    """An upper bound on `len(encode(profile))`, from the limits. Per profile: for each
    of the 6 types and 4 dimensions a map of at most MAX_GROUPS values (1 for `all`),
    keyed by a product id of at most 512 or a category or brand of at most 1024 UTF-8
    bytes, each cell 3 numbers and 4 windows of 5; RECENT recent events; MAX_CART cart
    lines; 4 strings. A user holds MAX_SESSIONS encoded session profiles besides its own.
    About 6.6 MB: far above what a Kafka changelog message may be by default (1 MB)."""
    kind = max(len(k) for k in TYPES)
    cell = HEADER + 3 * FLOAT + HEADER + len(WINDOWS) * 5 * FLOAT
    per_type = (  # `all`, then MAX_GROUPS products and MAX_GROUPS categories and brands
        len(DIMENSIONS) * (_str(kind + 1 + max(len(d) for d in DIMENSIONS)) + HEADER)
        + _str(0) + cell
        + MAX_GROUPS * (_str(ID_BYTES) + cell)
        + 2 * MAX_GROUPS * (_str(TEXT_BYTES) + cell)
    )  # fmt: skip
    cells = HEADER + len(TYPES) * per_type
    recent = HEADER + RECENT * (
        HEADER + 2 * FLOAT + _str(kind) + _str(ID_BYTES) + 2 * _str(TEXT_BYTES)
    )
    cart = HEADER + MAX_CART * (_str(ID_BYTES) + HEADER + 2 * FLOAT)
    fields = len(Profile.__struct_fields__) * (_str(16) + FLOAT)
    strings = 2 * _str(ID_BYTES) + 2 * _str(TEXT_BYTES)  # user, session, device, channel
    one = HEADER + cells + recent + cart + fields + strings
    return one + HEADER + MAX_SESSIONS * (_str(ID_BYTES) + HEADER + one)


SIZE_BOUND = size_bound()


def check_bounds(user: Profile) -> None:
    assert len(user.sessions) <= MAX_SESSIONS
    for p in every_profile(user):
        assert max(groups(p).values(), default=0) <= MAX_GROUPS, groups(p).most_common(1)
        assert len(p.recent) <= RECENT
        assert [r.ts for r in p.recent] == sorted(r.ts for r in p.recent)
        assert len(p.cart) <= MAX_CART
        assert all(qty > 0 for qty, _ in p.cart.values())
    assert all(not s.sessions for s in sessions(user).values())
    assert len(sessions(user)) == len(user.sessions)
    assert len(profiles.encode(user)) <= SIZE_BOUND


@settings(max_examples=25, deadline=None)
@given(data=st.data(), now=NOWS)
def test_bounds_hold_whatever_the_input(data: st.DataObject, now: float) -> None:
    many = st.integers(0, 10_000).map(str) | NASTY_TEXT
    seq = data.draw(
        events(now, many, st.sampled_from([f"s{i}" for i in range(12)]) | st.none(), 100)
    )
    check_bounds(fold(seq))


def test_eviction_keeps_the_most_recent_groups_even_with_bars_in_values() -> None:
    """Regression: values with `|` (legal in product ids and categories) escaped the
    MAX_GROUPS cap, because the group prefix was cut at the value's own last `|`."""
    user = fold(ev("product_view", T + i, f"{i}|x", f"c|{i}") for i in range(200))
    kept = values_of(user, "product_view", "product")
    assert kept == {f"{i}|x" for i in range(200 - MAX_GROUPS, 200)}
    assert groups(user)["product_view|category"] == MAX_GROUPS
    check_bounds(user)


def test_sessions_cart_and_recent_keep_the_newest() -> None:
    user = fold(ev("page_view", T + i, session=f"s{i}") for i in range(20))
    assert list(sessions(user)) == [f"s{i}" for i in range(12, 20)]
    user = observe(user, ev("page_view", T + 30, session="s12"))  # touched: now the newest
    assert list(user.sessions) == [*(f"s{i}" for i in range(13, 20)), "s12"]

    late = observe(user, ev("page_view", T + 14.5, session="s14"))  # older than s13..s19
    assert list(late.sessions) == [*(f"s{i}" for i in range(13, 20)), "s12"], "kept its place"
    assert sessions(late)["s14"].events == 2
    gone = observe(late, ev("page_view", T + 5.5, session="s5"))  # evicted long ago
    assert list(gone.sessions) == [*(f"s{i}" for i in range(13, 20)), "s12"], "pushes none out"
    assert gone.events == 23, "the user still counts it"
    newest = observe(gone, ev("page_view", T + 40, session="s40"))
    assert list(newest.sessions) == [*(f"s{i}" for i in range(14, 20)), "s12", "s40"]

    cart = fold(ev("add_to_cart", T + i, f"p{i}", price=1.0) for i in range(MAX_CART + 50))
    assert list(cart.cart) == [f"p{i}" for i in range(50, MAX_CART + 50)]

    shuffled = [ev("product_view", T + (i * 7) % 30, f"p{(i * 7) % 30}") for i in range(30)]
    recent = fold(shuffled).recent
    assert [r.product for r in recent] == [f"p{i}" for i in range(30 - RECENT, 30)]


def test_the_size_bound_holds_for_the_largest_profile() -> None:
    """The user and each of its sessions filled with the most groups and the longest
    strings. The sessions are folded once and stored under MAX_SESSIONS ids, as `observe`
    stores them (folding every session through `observe` takes seconds)."""

    def text(tag: int, n: int) -> str:  # n code points of 4 UTF-8 bytes, distinct per tag
        return "".join(chr(0x10000 + (tag * 7919 + i) % 0xF0000) for i in range(n))

    def big(kind: str, tag: int) -> BehaviourObserved:
        long = text(tag, MAX_TEXT)
        return ev(kind, T + tag / 1e3, text(tag, 128), long, long[::-1], 1.0, revenue=1.0,
                  user=user_id, device=text(1, MAX_TEXT), channel=text(2, MAX_TEXT))  # fmt: skip

    user_id = text(0, 128)
    seq = [big(kind, k * 100 + i) for k, kind in enumerate(TYPES) for i in range(MAX_GROUPS + 1)]
    seq += [big("add_to_cart", 700 + i) for i in range(MAX_CART)]
    seq += [big("search", 800 + i) for i in range(RECENT)]
    user = fold(seq)
    one = fold(seq)
    for s in range(MAX_SESSIONS):
        one.session_id = text(-s - 1, 128)
        user.sessions[one.session_id] = profiles.encode(one)
    check_bounds(user)
    cells = [sum(groups(p).values()) for p in every_profile(user)]
    assert cells == [len(TYPES) * (1 + 3 * MAX_GROUPS)] * (1 + MAX_SESSIONS)
    assert all(len(p.cart) == MAX_CART and len(p.recent) == RECENT for p in every_profile(user))
    assert 0.9 * SIZE_BOUND < len(profiles.encode(user)) <= SIZE_BOUND  # nearly reached
    # what the worker writes fits a Kafka message: the oldest sessions go, the newest stay
    bounded = profiles.decode(profiles.encode_bounded(profiles.decode(profiles.encode(user))))
    assert len(profiles.encode(bounded)) <= profiles.MAX_PROFILE_BYTES < SIZE_BOUND
    kept = len(user.sessions) - len(bounded.sessions)
    assert list(bounded.sessions) == list(user.sessions)[kept:]
    assert bounded.cells == user.cells and bounded.cart == user.cart
    longest_ids = [text(900 + i, 128) for i in range(profiles.MAX_SEEN)]  # retry ids kept
    alone = msgspec.structs.replace(user, sessions={}, seen=longest_ids)
    assert len(profiles.encode(alone)) <= profiles.MAX_PROFILE_BYTES, "the user alone fits"
    user = observe(user, ev("page_view", T + 1000, user=user_id, session=text(-99, 128)))
    check_bounds(user)
    assert len(user.sessions) == MAX_SESSIONS


# --- round trips, determinism, finiteness, scoping -----------------------------------------


def names_allowed(spec: Sequence[Aggregate], key: str, values: Mapping[str, object]) -> bool:
    mine = [a for a in spec if a.key == key]
    for name in values:
        if not any(
            name == a.name
            if a.by == "all" or a.aggregation == "scalar"
            else name.startswith(f"{a.name}=" if a.aggregation == "last_n" else f"{a.name}.")
            for a in mine
        ):
            return False
    return True


def as_user_spec(spec: Sequence[Aggregate]) -> list[Aggregate]:
    """The session aggregates, keyed by user: what they read from the session's profile."""
    return [dataclasses.replace(a, key="user") for a in spec if a.key == "session"]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), now=NOWS, later=st.floats(0, 10 * DAY))
def test_features_round_trip_are_deterministic_finite_and_scoped(
    data: st.DataObject, now: float, later: float
) -> None:
    session_ids = st.sampled_from(["s1", "s2", "s3"]) | st.none()
    seq = data.draw(events(now, st.sampled_from(["a", "b", "c|d", "e f"]), session_ids))
    user = fold(seq)
    at = now + later
    for sid in ["s1", "s2", "s3", "other", None]:
        got = features(FULL_SPEC, user, sid, at)
        assert got == features(FULL_SPEC, profiles.decode(profiles.encode(user)), sid, at)
        assert got == features(FULL_SPEC, user, sid, at)  # deterministic, no mutation
        assert set(got) <= {"user_features", "session_features"}
        for key, ns in [("user", "user_features"), ("session", "session_features")]:
            values = got.get(ns, {})
            assert values or ns not in got  # no empty namespaces
            assert names_allowed(FULL_SPEC, key, values)
            for value in values.values():
                assert isinstance(value, str) or (math.isfinite(value) and value >= 0.0)
        assert got.get("user_features") == features(FULL_SPEC, user, None, at).get("user_features")
        in_session = [e for e in seq if e.session_id == sid]
        if sid is None or not in_session:
            assert "session_features" not in got
            continue
        alone = features(as_user_spec(FULL_SPEC), sessions(user)[sid], None, at)
        assert got["session_features"] == alone.get("user_features")
        assert got["session_features"]["session_depth"] == len(in_session)
        assert got["session_features"]["session_count_all_life"] == len(in_session)
    assert features(FULL_SPEC, None, "s1", at) == {}
    assert features((), user, "s1", at) == {}
    assert features(FULL_SPEC, user, None, at)["user_features"]["user_depth"] == len(seq)


# --- order independence of lifetime aggregates ----------------------------------------------

LIFETIME_SPEC = [
    Aggregate(f"{aggregation}_{event}_{by}", "user", aggregation, event, by, per="product_view")
    for aggregation in ("count", "sum", "mean", "rate", "recency")
    for event in (featurespec.ANY, *TYPES)
    for by in DIMENSIONS
] + [
    Aggregate(scalar, aggregation="scalar", scalar=scalar)
    for scalar in ("depth", "age", "lifetime_spend", "purchases", "price_affinity")
]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), now=NOWS, later=st.floats(0, DAY))
def test_lifetime_aggregates_do_not_depend_on_event_order(
    data: st.DataObject, now: float, later: float
) -> None:
    """Integer prices and quantities, so sums are exact; few values, so nothing is evicted."""
    seq = data.draw(events(now, st.sampled_from(["a", "b", "c"]), st.none(), integral=True))
    shuffled = data.draw(st.permutations(seq))
    one = features(LIFETIME_SPEC, fold(seq), None, now + later)
    assert one == features(LIFETIME_SPEC, fold(shuffled), None, now + later)
    user = one["user_features"]
    assert user["depth"] == len(seq)
    assert user.get("count_any_all", 0.0) == len(seq)
    spend = sum(e.revenue for e in seq)
    assert user.get("lifetime_spend", 0.0) == spend
    views = Counter(e.product.category for e in seq if e.kind == "product_view" and e.product)
    for category, n in views.items():
        if category is not None:
            assert user[f"count_product_view_category.{category}"] == n


# --- VW can always encode them --------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(data=st.data(), now=NOWS)
def test_features_always_encode_for_vw(data: st.DataObject, now: float) -> None:
    seq = data.draw(events(now, NASTY_TEXT, NASTY_TEXT | st.none(), 30))
    user = fold(seq)
    for sid in {e.session_id for e in seq}:
        got: Features = features(FULL_SPEC, user, sid, now)
        line = vwformat.shared_line(got)
        assert "\n" not in line and "\r" not in line
        assert line.startswith("shared |c")
        tokens = line.split(" ")  # shared, then per namespace `|c<ns>` and its features
        assert len(tokens) == 1 + max(1, len(got)) + sum(len(v) for v in got.values())
        assert sum(t.startswith("|") for t in tokens) == max(1, len(got))
        assert all(t.count("|") == t.startswith("|") for t in tokens)


# --- a worked example, by hand --------------------------------------------------------------


def test_worked_example() -> None:
    def view(ts: float, product: str, category: str, brand: str, price: float) -> BehaviourObserved:
        return ev("product_view", ts, product, category, brand, price, session="s1",
                  device="mobile", channel="web")  # fmt: skip

    user = fold(
        [
            view(T - 600, "r1", "running", "nike", 100.0),
            view(T - 599, "r2", "running", "nike", 100.0),
            view(T - 598, "r3", "running", "adidas", 100.0),
            view(T, "y1", "yoga", "lulu", 40.0),
        ]
    )
    got = features(DEFAULT_SPEC, user, "s1", T)
    assert got["user_features"] == {
        "views_1h.running": 3.0,
        "views_1h.yoga": 1.0,
        "views_24h.running": 3.0,
        "views_24h.yoga": 1.0,
        "views_7d.running": 3.0,
        "views_7d.yoga": 1.0,
        "brand_views_24h.nike": 2.0,
        "brand_views_24h.adidas": 1.0,
        "brand_views_24h.lulu": 1.0,
        "viewed_recently.running": 2.0 ** (-598 / 3600),  # half-life 1 h, newest 598 s ago
        "viewed_recently.yoga": 1.0,
        "last_categories=yoga": 1.0,
        "last_categories=running": 1.0,
        "price_affinity": 85.0,  # (3 x 100 + 40) / 4
        "device": "mobile",
        "channel": "web",
    }
    categories = [k for k in got["user_features"] if k.startswith("last_categories=")]
    assert categories == ["last_categories=yoga", "last_categories=running"]
    session = got["session_features"]
    assert session == {
        "views_5m.yoga": 1.0,  # the running views are 10 min old
        "last_products=y1": 1.0,
        "last_products=r3": 1.0,
        "last_products=r2": 1.0,
        "last_products=r1": 1.0,
        "depth": 4.0,
    }
    assert [k.removeprefix("last_products=") for k in session if "=" in k] == [
        "y1", "r3", "r2", "r1"
    ]  # fmt: skip

    for event in [
        ev("add_to_cart", T + 10, "r1", "running", None, 100.0, session="s1", quantity=2),
        ev("add_to_cart", T + 20, "y1", "yoga", None, 40.0, session="s1"),
        ev("remove_from_cart", T + 30, "r1", "running", session="s1"),
    ]:
        user = observe(user, event)
    got = features(DEFAULT_SPEC, user, "s1", T + 30)
    assert got["session_features"]["cart_value"] == 140.0  # 1 x 100 + 1 x 40
    assert got["session_features"]["depth"] == 7.0
    assert got["user_features"]["carts_24h.running"] == 1.0
    assert got["user_features"]["carts_24h.yoga"] == 1.0
    assert got["user_features"]["viewed_recently.yoga"] == 2.0 ** (-30 / 3600)
    assert "lifetime_spend" not in got["user_features"]
    assert next(k for k in got["session_features"] if "=" in k) == "last_products=y1"

    user = observe(user, ev("purchase", T + 40, session="s1", revenue=140.0))
    user = observe(user, ev("purchase", T + 50, session="s2", revenue=60.0))
    got = features(DEFAULT_SPEC, user, "s1", T + 50)
    assert "cart_value" not in got["session_features"]  # a purchase empties the cart
    assert got["user_features"]["lifetime_spend"] == 200.0
    assert got["user_features"]["purchases_7d"] == 2.0
    assert features(DEFAULT_SPEC, user, "s2", T + 50)["session_features"] == {"depth": 1.0}


def test_worked_example_of_action_popularity() -> None:
    """3 views, a cart and a purchase of r1: the `action` aggregates of DEFAULT_SPEC,
    each rounded to a power of 2^(1/4)."""
    stats = None
    for event in [
        ev("product_view", T - 30, "r1", price=10.0),
        ev("product_view", T - 20, "r1", price=10.0, user="u2"),
        ev("product_view", T - 10, "r1", price=10.0, user="u3"),
        ev("add_to_cart", T - 5, "r1", price=10.0),
        ev("purchase", T, "r1", price=10.0, revenue=10.0),
    ]:
        stats = profilefold.observe_product(stats, event)
    assert stats is not None and set(groups(stats).elements()) == {
        "product_view|all", "add_to_cart|all", "purchase|all"
    }  # fmt: skip
    got = profileread.action_features(DEFAULT_SPEC, {"r1": stats, "r2": None}, T)
    assert got == {
        "r1": {
            "popularity": {
                "views_1h": 2.0**1.5,  # 3 -> 2^(round(4 log2 3) / 4) = 2^(6/4)
                "carts_24h": 1.0,
                "conversion_7d": 2.0**-1.5,  # 1/3 -> 2^(-6/4)
            }
        }
    }
    with pytest.raises(InvalidInput) as raised:
        profilefold.observe_product(stats, ev("page_view", T))
    assert raised.value.field == "product"


@settings(max_examples=60, deadline=None)
@given(data=st.data(), now=NOWS)
def test_action_features_are_bounded_finite_and_quantized(data: st.DataObject, now: float) -> None:
    seq = data.draw(events(now, st.sampled_from(["p", "q"]), st.none()))
    stats: dict[str, Profile | None] = {"absent": None}
    for event in seq:
        if event.product is not None:
            pid = event.product.id
            stats[pid] = profilefold.observe_product(stats.get(pid), event)
    spec = FULL_SPEC + parse_spec(
        [
            {"name": f"a_{aggregation}", "key": "action", "aggregation": aggregation}
            | ({"per": "product_view", "event": "purchase"} if aggregation == "rate" else {})
            for aggregation in featurespec.ACTION_AGGREGATIONS
        ]
    )
    got = profileread.action_features(spec, stats, now)
    assert set(got) <= set(stats) - {"absent"}
    for pid, namespaces in got.items():
        assert list(namespaces) == ["popularity"]
        assert sum(groups(stats[pid]).values()) <= len(TYPES)  # type: ignore[arg-type]
        for value in namespaces["popularity"].values():
            assert isinstance(value, float) and math.isfinite(value) and value > 0
            assert abs(4 * math.log2(value) - round(4 * math.log2(value))) < 1e-9  # 2^(k/4)
        vwformat.action_body(namespaces)


# --- the declarative spec -------------------------------------------------------------------


def test_default_spec_round_trips_through_json() -> None:
    as_json = msgspec.json.decode(msgspec.json.encode(spec_json(DEFAULT_SPEC)))
    assert parse_spec(as_json) == DEFAULT_SPEC
    assert parse_spec(spec_json(FULL_SPEC)) == FULL_SPEC


NAMES = st.from_regex(r"[A-Za-z0-9_]{1,64}", fullmatch=True)


@st.composite
def raw_aggregates(draw: st.DrawFn) -> dict[str, object]:
    key = draw(st.sampled_from(featurespec.KEYS))
    out: dict[str, object] = {"name": draw(NAMES), "key": key}
    action = key == "action"
    aggregation = draw(
        st.sampled_from(featurespec.ACTION_AGGREGATIONS if action else featurespec.AGGREGATIONS)
    )
    out["aggregation"] = aggregation
    if aggregation == "scalar":
        out["scalar"] = draw(st.sampled_from(featurespec.SCALARS))
        return out
    out["event"] = draw(st.sampled_from([featurespec.ANY, *TYPES]))
    dims = ("all",) if action else DIMENSIONS[1:] if aggregation == "last_n" else DIMENSIONS
    out["by"] = draw(st.sampled_from(dims))
    if aggregation == "rate":
        out["per"] = draw(st.sampled_from(TYPES))
    window = draw(st.sampled_from([None, *WINDOWS]))
    if window is not None:
        out["window"] = window
    if aggregation == "last_n":
        out["n"] = draw(st.integers(1, featurespec.MAX_LAST_N))
    return out


@settings(max_examples=50, deadline=None)
@given(
    raw=st.lists(
        raw_aggregates(), max_size=featurespec.MAX_SPEC, unique_by=lambda a: (a["name"], a["key"])
    )
)
def test_any_valid_spec_round_trips(raw: list[dict[str, object]]) -> None:
    spec = parse_spec(raw)
    assert spec_json(spec) == raw
    assert parse_spec(spec_json(spec)) == spec


OK = {"name": "ok"}


def bad(entry: object, at: int = 2) -> list[object]:
    """A spec whose entry `at` is `entry`, the others valid."""
    return [{"name": f"ok{i}"} if i != at else entry for i in range(at + 1)]


BAD_SPECS: list[tuple[str, object, str, str]] = [
    ("not a list", {"features": []}, "features", "must be an array"),
    ("too many", [{"name": f"f{i}"} for i in range(65)], "features", "more than the limit of 64"),
    ("entry not an object", bad(3), "features[2]", "must be an object"),
    ("unknown field", bad({"name": "a", "colour": 1}), "features[2].colour", "not a known field"),
    ("name missing", bad({"key": "user"}), "features[2].name", "1-64 letters"),
    ("name empty", bad({"name": ""}), "features[2].name", "1-64 letters"),
    ("name with a dash", bad({"name": "a-b"}), "features[2].name", "got 'a-b'"),
    ("name with a dot", bad({"name": "a.b"}), "features[2].name", "1-64 letters"),
    ("name not ascii", bad({"name": "é"}), "features[2].name", "1-64 letters"),
    ("name too long", bad({"name": "a" * 65}), "features[2].name", "1-64 letters"),
    ("name a number", bad({"name": 1}), "features[2].name", "1-64 letters"),
    ("key unknown", bad({"name": "a", "key": "cart"}), "features[2].key", "one of user, session"),
    ("aggregation", bad({"name": "a", "aggregation": "max"}), "features[2].aggregation", "max"),
    ("event unknown", bad({"name": "a", "event": "click"}), "features[2].event", "one of any"),
    ("by unknown", bad({"name": "a", "by": "colour"}), "features[2].by", "one of all"),
    ("window unknown", bad({"name": "a", "window": "2h"}), "features[2].window", "5m, 1h"),
    ("window a number", bad({"name": "a", "window": 3600}), "features[2].window", "one of"),
    ("n zero", bad({"name": "a", "n": 0}), "features[2].n", "integer in [1, 20]"),
    ("n too large", bad({"name": "a", "n": 21}), "features[2].n", "integer in [1, 20]"),
    ("n a boolean", bad({"name": "a", "n": True}), "features[2].n", "integer"),
    ("n a float", bad({"name": "a", "n": 2.5}), "features[2].n", "integer"),
    (
        "last_n by all",
        bad({"name": "a", "aggregation": "last_n"}),
        "features[2].by",
        "product, category or brand",
    ),
    ("scalar missing", bad({"name": "a", "aggregation": "scalar"}), "features[2].scalar", "depth"),
    (
        "scalar unknown",
        bad({"name": "a", "aggregation": "scalar", "scalar": "x"}),
        "features[2].scalar",
        "got 'x'",
    ),
    (
        "scalar with an event",
        bad({"name": "a", "aggregation": "scalar", "scalar": "depth", "event": "purchase"}),
        "features[2].event",
        "does not apply to a scalar",
    ),
    (
        "scalar with by and window",
        bad({"name": "a", "aggregation": "scalar", "scalar": "age", "window": "1h", "by": "all"}),
        "features[2].by",
        "does not apply to a scalar",
    ),
    (
        "count with a scalar",
        bad({"name": "a", "scalar": "depth"}),
        "features[2].scalar",
        "only to aggregation 'scalar'",
    ),
    ("duplicate name", [OK, {"name": "x"}, OK], "features[2].name", "'ok' appears twice"),
    ("rate without per", bad({"name": "a", "aggregation": "rate"}), "features[2].per", "one of"),
    (
        "rate per any",
        bad({"name": "a", "aggregation": "rate", "per": "any"}),
        "features[2].per",
        "got 'any'",
    ),
    ("per on a count", bad({"name": "a", "per": "purchase"}), "features[2].per", "only to"),
    (
        "action last_n",
        bad({"name": "a", "key": "action", "aggregation": "last_n", "by": "product"}),
        "features[2].aggregation",
        "for key 'action'",
    ),
    (
        "action scalar",  # was accepted: the check came after the scalar branch returned
        bad({"name": "a", "key": "action", "aggregation": "scalar", "scalar": "depth"}),
        "features[2].aggregation",
        "for key 'action'",
    ),
    (
        "action by category",
        bad({"name": "a", "key": "action", "by": "category"}),
        "features[2].by",
        "must be 'all' for key 'action'",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [pytest.param(body, field, fragment, id=name) for name, body, field, fragment in BAD_SPECS],
)
def test_bad_specs_name_the_field(body: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_spec(body)
    assert raised.value.field == field
    assert fragment in raised.value.detail


def test_spec_limits_and_keys() -> None:
    with pytest.raises(LimitExceeded):
        parse_spec([{"name": f"f{i}"} for i in range(featurespec.MAX_SPEC + 1)])
    assert len(parse_spec([{"name": f"f{i}"} for i in range(featurespec.MAX_SPEC)])) == 64
    same_name = parse_spec([{"name": "a"}, {"name": "a", "key": "session"}])
    assert [a.key for a in same_name] == ["user", "session"]
    assert parse_spec([{"name": "a", "key": "action", "aggregation": "rate", "per": "search"}])
    assert parse_spec([]) == ()


def test_a_retried_event_counts_once_and_the_ids_kept_are_bounded() -> None:
    first = ev("product_view", T, "p1", "running", "acme", 10.0)
    first = msgspec.structs.replace(first, event_id="e-1")
    user = observe(None, first)
    assert profilefold.duplicate(user, first)
    assert not profilefold.duplicate(user, msgspec.structs.replace(first, event_id="e-2"))
    assert not profilefold.duplicate(user, msgspec.structs.replace(first, event_id=None))
    for i in range(profiles.MAX_SEEN + 10):
        user = observe(user, msgspec.structs.replace(first, event_id=f"x{i}"))
    assert len(user.seen) == profiles.MAX_SEEN and user.seen[-1] == f"x{profiles.MAX_SEEN + 9}"
    assert not profilefold.duplicate(user, first), "the oldest ids are forgotten"
