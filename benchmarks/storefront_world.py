"""A simulated storefront of 500 products whose click model is known exactly.

Each product has stable features (category, brand tier, list price) and a latent appeal
that no feature names (only the product's id can learn it). Each request shows a
different random subset of 30 products, each with per-request features: a discount (so
a price) and a stock level with its low-stock flag. Visitors come with a segment and a
device. The click probability is a logistic function of context x product features,
the per-request ones included: bargain hunters click discounted items far more, casual
visitors a little more, premium visitors not at all; casual and premium visitors click
more on an item that is about to sell out, bargain hunters less. So a policy that sees
the per-request features can do better than one that sees only the stable ones, and the
best the latter can do is computable: `stable_best`, the best of the 30 by the click
probability averaged over the per-request features' distribution.

Used by `python -m benchmarks personalizer_storefront`. Seeded and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

PRODUCTS = 500
SHOWN = 30
CATEGORIES = 8
TIERS = ("budget", "standard", "premium")
SEGMENTS = ("bargain", "premium", "casual")
SEGMENT_WEIGHTS = (0.4, 0.3, 0.3)
DEVICES = ("mobile", "desktop")
DISCOUNTS = (0.0, 0.1, 0.2, 0.3, 0.5)
DISCOUNT_WEIGHTS = (0.7, 0.075, 0.075, 0.075, 0.075)
LOW_STOCK_SHARE = 0.2  # a candidate is low in stock (1-4 left) this often
LOW_STOCK_BELOW = 5
BASE_LOGIT = -3.0
# logit per unit of discount, per segment: a 50% discount adds 2.5 for a bargain hunter
DISCOUNT_SLOPE = np.array([5.0, 0.0, 1.5])
LOW_STOCK_LOGIT = np.array([-0.5, 0.4, 0.8])  # per segment
TIER_LOGIT = np.array([[0.4, 0.0, -0.6], [-0.8, 0.0, 0.7], [0.0, 0.2, 0.0]])  # segment x tier
MOBILE_BUDGET_LOGIT = 0.2  # mobile visitors lean a little to budget items
CATEGORY_SPREAD = 0.6  # sd of the segment x category logits
APPEAL_SPREAD = 0.3  # sd of each product's latent appeal


@dataclass(frozen=True, slots=True)
class Catalog:
    """The 500 products' stable features and the click model's own parameters."""

    category: Ints  # [P]
    tier: Ints  # [P]
    list_price: Floats  # [P]
    appeal: Floats  # [P], latent
    category_logit: Floats  # [segments, categories]

    def ids(self) -> list[str]:
        return [f"p{j:03d}" for j in range(PRODUCTS)]

    def stable_features(self, j: int) -> dict[str, object]:
        return {
            "category": f"c{int(self.category[j])}",
            "tier": TIERS[int(self.tier[j])],
            "list_price": float(self.list_price[j]),
        }


@dataclass(frozen=True, slots=True)
class Visits:
    """N requests: who visits, which 30 products they may be shown, and at what terms."""

    segment: Ints  # [N]
    device: Ints  # [N]
    candidates: Ints  # [N, 30] product indices, distinct per row
    discount: Floats  # [N, 30]
    stock: Ints  # [N, 30]
    draw: Floats  # [N] uniform: clicked iff draw < p(shown), the same draw for every arm

    def __len__(self) -> int:
        return int(self.segment.shape[0])

    @property
    def low_stock(self) -> Bools:
        return self.stock < LOW_STOCK_BELOW

    def context(self, i: int) -> dict[str, object]:
        return {
            "visitor": {
                "segment": SEGMENTS[int(self.segment[i])],
                "device": DEVICES[int(self.device[i])],
            }
        }

    def inline_actions(self, catalog: Catalog, i: int) -> list[dict[str, object]]:
        """The request's 30 actions with their stable and per-request features."""
        actions: list[dict[str, object]] = []
        for k, j in enumerate(self.candidates[i].tolist()):
            discount = float(self.discount[i, k])
            product = catalog.stable_features(j)
            product["price"] = round(float(catalog.list_price[j]) * (1.0 - discount), 2)
            product["discount"] = discount
            product["stock"] = int(self.stock[i, k])
            product["low_stock"] = bool(self.stock[i, k] < LOW_STOCK_BELOW)
            actions.append({"id": f"p{j:03d}", "features": {"product": product}})
        return actions


def catalog(seed: int) -> Catalog:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    tier = rng.choice(len(TIERS), size=PRODUCTS, p=[0.4, 0.4, 0.2]).astype(np.int64)
    base_price = np.array([15.0, 40.0, 120.0])[tier]
    return Catalog(
        category=rng.integers(0, CATEGORIES, size=PRODUCTS).astype(np.int64),
        tier=tier,
        list_price=np.round(base_price * rng.lognormal(0.0, 0.3, size=PRODUCTS), 2),
        appeal=rng.normal(0.0, APPEAL_SPREAD, size=PRODUCTS),
        category_logit=rng.normal(0.0, CATEGORY_SPREAD, size=(len(SEGMENTS), CATEGORIES)),
    )


def visits(seed: int, n: int) -> Visits:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    candidates = np.argsort(rng.random((n, PRODUCTS)), axis=1)[:, :SHOWN].astype(np.int64)
    low = rng.random((n, SHOWN)) < LOW_STOCK_SHARE
    stock = np.where(
        low, rng.integers(1, LOW_STOCK_BELOW, (n, SHOWN)), rng.integers(5, 201, (n, SHOWN))
    )
    return Visits(
        segment=rng.choice(len(SEGMENTS), size=n, p=SEGMENT_WEIGHTS).astype(np.int64),
        device=rng.integers(0, len(DEVICES), size=n).astype(np.int64),
        candidates=candidates,
        discount=rng.choice(DISCOUNTS, size=(n, SHOWN), p=DISCOUNT_WEIGHTS),
        stock=stock.astype(np.int64),
        draw=rng.random(n),
    )


def click_probability(world: Catalog, v: Visits) -> Floats:
    """[N, 30]: the true click probability of each candidate of each request."""
    return _sigmoid(_stable_logit(world, v) + _request_logit(v, v.discount, v.low_stock))


def stable_best(world: Catalog, v: Visits) -> Ints:
    """[N]: the candidate (column) that the best policy blind to the per-request features
    picks: the highest click probability averaged over their distribution."""
    stable = _stable_logit(world, v)
    expected = np.zeros_like(stable)
    for discount, pd in zip(DISCOUNTS, DISCOUNT_WEIGHTS, strict=True):
        for low, pl in ((True, LOW_STOCK_SHARE), (False, 1.0 - LOW_STOCK_SHARE)):
            lows = np.full(stable.shape, low)
            request = _request_logit(v, np.full(stable.shape, discount), lows)
            expected += pd * pl * _sigmoid(stable + request)
    best: Ints = expected.argmax(axis=1).astype(np.int64)
    return best


def _stable_logit(world: Catalog, v: Visits) -> Floats:
    seg = v.segment[:, None]
    tier = world.tier[v.candidates]
    logit = BASE_LOGIT + world.category_logit[seg, world.category[v.candidates]]
    logit = logit + TIER_LOGIT[seg, tier] + world.appeal[v.candidates]
    mobile_budget = (v.device[:, None] == 0) & (tier == 0)
    out: Floats = logit + MOBILE_BUDGET_LOGIT * mobile_budget
    return out


def _request_logit(v: Visits, discount: Floats, low_stock: Bools) -> Floats:
    seg = v.segment[:, None]
    out: Floats = DISCOUNT_SLOPE[seg] * discount + LOW_STOCK_LOGIT[seg] * low_stock
    return out


def _sigmoid(x: Floats) -> Floats:
    out: Floats = 1.0 / (1.0 + np.exp(-x))
    return out
