"""The feature spec: what a catalog declares about the features it reads from the store.

A catalog's "features" is a list of aggregates (`Aggregate`): which key (user, session or
the action's product), which events, by which dimension, over which window, aggregated
how. `parse_spec` validates it (every error names its field), `DEFAULT_SPEC` is what a
catalog that declares nothing reads, and the vocabulary (windows, dimensions,
aggregations, scalars) is defined here, so a spec is checked without the store.
engine.profileread computes the declared features from a profile.

May import: the standard library, engine.behaviour, engine.errors and engine.validate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.behaviour import TYPES
from engine.errors import InvalidInput, LimitExceeded
from engine.validate import as_object, no_unknown, one_of

WINDOWS: dict[str, float] = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0, "7d": 604800.0}
DIMENSIONS = ("all", "category", "brand", "product")
MAX_SPEC = 64  # aggregates per catalog
MAX_LAST_N = 20  # the longest last_n: profiles keep as many recent product events
ANY = "any"
AGGREGATIONS = ("count", "sum", "mean", "rate", "recency", "last_n", "scalar")
ACTION_AGGREGATIONS = ("count", "sum", "mean", "rate", "recency")
SCALARS = (
    "depth",  # events so far
    "age",  # seconds since the first event
    "cart_value",
    "cart_items",
    "lifetime_spend",
    "purchases",
    "price_affinity",  # mean price of viewed products
    "device",
    "channel",
)
KEYS = ("user", "session", "action")
NAMESPACES = {"user": "user_features", "session": "session_features", "action": "popularity"}


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One declared feature: `name` in the key's namespace (`user_features` or
    `session_features`), by dimension value as `name.value` unless `by` is `all`."""

    name: str
    key: str = "user"
    aggregation: str = "count"
    event: str = ANY
    by: str = "all"
    window: str | None = None  # a WINDOWS name; None = lifetime
    n: int = 5  # last_n
    scalar: str | None = None
    per: str | None = None  # rate: events of `event` per event of `per`

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "key": self.key}
        out["aggregation"] = self.aggregation
        if self.aggregation == "scalar":
            out["scalar"] = self.scalar
            return out
        out.update({"event": self.event, "by": self.by})
        if self.window is not None:
            out["window"] = self.window
        if self.aggregation == "last_n":
            out["n"] = self.n
        if self.aggregation == "rate":
            out["per"] = self.per
        return out


FeatureSpec = tuple[Aggregate, ...]


def _agg(
    name: str,
    key: str = "user",
    *,
    aggregation: str = "count",
    event: str = ANY,
    by: str = "all",
    window: str | None = None,
    scalar: str | None = None,
    per: str | None = None,
) -> Aggregate:
    return Aggregate(name, key, aggregation, event, by, window, scalar=scalar, per=per)


DEFAULT_SPEC: FeatureSpec = (
    _agg("views_5m", "session", event="product_view", by="category", window="5m"),
    _agg("views_1h", event="product_view", by="category", window="1h"),
    _agg("views_24h", event="product_view", by="category", window="24h"),
    _agg("views_7d", event="product_view", by="category", window="7d"),
    _agg("brand_views_24h", event="product_view", by="brand", window="24h"),
    _agg("carts_24h", event="add_to_cart", by="category", window="24h"),
    _agg("purchases_7d", event="purchase", window="7d"),
    _agg(
        "viewed_recently", aggregation="recency", event="product_view", by="category", window="1h"
    ),
    _agg("last_products", "session", aggregation="last_n", event="product_view", by="product"),
    _agg("last_categories", aggregation="last_n", event="product_view", by="category"),
    _agg("depth", "session", aggregation="scalar", scalar="depth"),
    _agg("cart_value", "session", aggregation="scalar", scalar="cart_value"),
    _agg("lifetime_spend", aggregation="scalar", scalar="lifetime_spend"),
    _agg("price_affinity", aggregation="scalar", scalar="price_affinity"),
    _agg("device", aggregation="scalar", scalar="device"),
    _agg("channel", aggregation="scalar", scalar="channel"),
    _agg("views_1h", "action", event="product_view", window="1h"),
    _agg("carts_24h", "action", event="add_to_cart", window="24h"),
    _agg(
        "conversion_7d",
        "action",
        aggregation="rate",
        event="purchase",
        per="product_view",
        window="7d",
    ),
)


def parse_spec(body: object) -> FeatureSpec:
    """A catalog's `features`: a list of aggregates (`[]` turns the store off for it)."""
    if not isinstance(body, list):
        raise InvalidInput("features must be an array of aggregates", field="features")
    if len(body) > MAX_SPEC:
        raise LimitExceeded(
            f"features has {len(body)} aggregates, more than the limit of {MAX_SPEC}",
            field="features",
        )
    out: list[Aggregate] = []
    for i, raw in enumerate(body):
        agg = _aggregate(raw, f"features[{i}]")
        if any(a.name == agg.name and a.key == agg.key for a in out):
            raise InvalidInput(
                f"features[{i}].name {agg.name!r} appears twice for key {agg.key!r}",
                field=f"features[{i}].name",
            )
        out.append(agg)
    return tuple(out)


def _aggregate(raw: object, where: str) -> Aggregate:
    obj = as_object(raw, where)
    no_unknown(
        obj,
        {"name", "key", "aggregation", "event", "by", "window", "n", "scalar", "per"},
        f"{where}.",
    )
    name = obj.get("name")
    if not isinstance(name, str) or not _name_ok(name):
        raise InvalidInput(
            f"{where}.name must be 1-64 letters, digits or _ (a feature name), got {name!r}",
            field=f"{where}.name",
        )
    key = one_of(obj.get("key", "user"), KEYS, f"{where}.key")
    aggregation = one_of(obj.get("aggregation", "count"), AGGREGATIONS, f"{where}.aggregation")
    if key == "action" and aggregation not in ACTION_AGGREGATIONS:
        raise InvalidInput(
            f"{where}.aggregation must be one of {', '.join(ACTION_AGGREGATIONS)} for key "
            f"'action', got {aggregation!r}",
            field=f"{where}.aggregation",
        )
    if aggregation == "scalar":
        extra = set(obj) - {"name", "key", "aggregation", "scalar"}
        if extra:
            field = f"{where}.{sorted(extra)[0]}"
            raise InvalidInput(f"{field} does not apply to a scalar aggregate", field=field)
        scalar = one_of(obj.get("scalar"), SCALARS, f"{where}.scalar")
        return Aggregate(name=name, key=key, aggregation=aggregation, scalar=scalar)
    if "scalar" in obj:
        raise InvalidInput(
            f"{where}.scalar applies only to aggregation 'scalar'", field=f"{where}.scalar"
        )
    if key == "action" and obj.get("by", "all") != "all":
        raise InvalidInput(
            f"{where}.by must be 'all' for key 'action' (one value per action)", field=f"{where}.by"
        )
    per = None
    if aggregation == "rate":
        per = one_of(obj.get("per"), TYPES, f"{where}.per")
    elif "per" in obj:
        raise InvalidInput(f"{where}.per applies only to aggregation 'rate'", field=f"{where}.per")
    event = one_of(obj.get("event", ANY), (ANY, *TYPES), f"{where}.event")
    by = one_of(obj.get("by", "all"), DIMENSIONS, f"{where}.by")
    window_raw = obj.get("window")
    window = None if window_raw is None else one_of(window_raw, tuple(WINDOWS), f"{where}.window")
    n_raw = obj.get("n", 5)
    if isinstance(n_raw, bool) or not isinstance(n_raw, int) or not 1 <= n_raw <= MAX_LAST_N:
        raise InvalidInput(f"{where}.n must be an integer in [1, {MAX_LAST_N}]", field=f"{where}.n")
    if aggregation == "last_n" and by == "all":
        raise InvalidInput(
            f"{where}.by must be product, category or brand for last_n", field=f"{where}.by"
        )
    return Aggregate(name, key, aggregation, event, by, window, n_raw, per=per)


def spec_json(spec: Sequence[Aggregate]) -> list[dict[str, object]]:
    return [a.to_json() for a in spec]


def _name_ok(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
