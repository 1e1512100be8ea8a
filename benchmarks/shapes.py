"""Request shapes for the serving benchmarks: K actions x F context features."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

THEMES = ("running", "yoga", "outdoor", "sale", "cycling", "tennis", "swimming", "kids")


@dataclass(frozen=True)
class Shape:
    actions: int
    features: int

    @property
    def name(self) -> str:
        return f"{self.actions}x{self.features}"

    @property
    def catalog(self) -> str:
        return f"bench-{self.name}"


SHAPES = (Shape(10, 20), Shape(50, 20), Shape(200, 1000))
MAIN = SHAPES[1]
WIDE = SHAPES[2]  # the "1,000+ variables" case


def catalog_body(shape: Shape, wait: float = 10.0) -> dict[str, object]:
    """K actions, each with a few action features; the default learning settings."""
    actions = [
        {
            "id": f"a{j:04d}",
            "features": {
                "item": {
                    "theme": THEMES[j % len(THEMES)],
                    "price": round(5.0 + (j * 7) % 95, 2),
                    "discount": 0.1 * (j % 4),
                    "new": j % 3 == 0,
                }
            },
            "metadata": {"title": f"action {j}"},
        }
        for j in range(shape.actions)
    ]
    return {"actions": actions, "learning": {"reward_wait_seconds": wait}}


def context(shape: Shape, i: int) -> dict[str, object]:
    """F features: half numeric, half categorical, split over a user and a page namespace."""
    user: dict[str, object] = {}
    page: dict[str, object] = {}
    for k in range(shape.features):
        target = user if k % 2 == 0 else page
        if k % 4 < 2:
            target[f"n{k}"] = round(((i * 31 + k * 17) % 1000) / 10.0, 1)
        else:
            target[f"c{k}"] = f"v{(i + k) % 13}"
    return {"user": user, "page": page}


def decide_body(shape: Shape, i: int, event_id: str | None = None) -> bytes:
    body: dict[str, object] = {"catalog": shape.catalog, "context": context(shape, i)}
    body["user_id"] = f"u{i % 5000}"
    if event_id is not None:
        body["event_id"] = event_id
    return msgspec.json.encode(body)
