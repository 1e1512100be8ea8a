"""Who may start a request now: per-key rate limits, and load shedding under overload.

Rate limits (`LOOPWISE_RATE_LIMITS`, e.g. `storefront:2000,marketer:20:40`): each API key
of a role has a token bucket of `rate` requests a second and `burst` at once (default
2 x rate); a request over it is refused with 429 and a Retry-After that says when the
bucket has a token again. The buckets are per serving process (with N processes behind a
balancer a key gets about N times its rate). A role without a limit has none.

Load shedding (`LOOPWISE_MAX_INFLIGHT`, default 64): at most that many requests are inside
the handlers at once; one more is answered 503 with Retry-After: 1 at once, before its
body is read, so that under overload the admitted requests keep their latency instead of
every request waiting in one growing queue. Health, readiness and metrics are never shed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInput, RateLimited

NEVER_SHED = frozenset({"/healthz", "/readyz", "/metrics"})
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float  # tokens a second
    burst: float  # the bucket's size


def parse_limits(spec: str, roles: Sequence[str]) -> dict[str, Limit]:
    """'role:rate[:burst],...' -> {role: Limit}; errors name LOOPWISE_RATE_LIMITS."""
    limits: dict[str, Limit] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        role, *numbers = item.split(":")
        try:
            rate = float(numbers[0])
            burst = float(numbers[1]) if len(numbers) > 1 else 2.0 * rate
        except (IndexError, ValueError):
            rate = burst = float("nan")
        if (
            role not in roles
            or len(numbers) > 2
            or not (math.isfinite(rate) and rate > 0 and math.isfinite(burst) and burst >= 1)
        ):
            raise InvalidInput(
                f"LOOPWISE_RATE_LIMITS entry {item!r} must be role:rate[:burst] with a role of "
                f"{', '.join(roles)}, a rate > 0 requests a second and a burst >= 1",
                field="LOOPWISE_RATE_LIMITS",
            )
        limits[role] = Limit(rate, burst)
    return limits


@dataclass
class Limiter:
    limits: dict[str, Limit]
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> tokens, at
    refused: int = 0

    def take(self, key: str, role: str, now: float) -> None:
        """Spend one of `key`'s tokens (monotonic `now`), or raise RateLimited."""
        limit = self.limits.get(role)
        if limit is None:
            return
        tokens, at = self.buckets.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - at) * limit.rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / limit.rate
            self.buckets[key] = (tokens, now)
            self.refused += 1
            raise RateLimited(
                f"this key is over its {role} limit of {limit.rate:g} requests a second "
                f"(bursts of {limit.burst:g}); retry after {wait:.3f} s",
                retry_after=wait,
                field="Authorization",
            )
        self.buckets[key] = (tokens - 1.0, now)


@dataclass
class Gate:
    """How many requests are in the handlers, of at most `limit`, and how many were shed."""

    limit: int
    inflight: int = 0
    shed: int = 0


class Shedder:
    """ASGI middleware: at most `gate.limit` HTTP requests in the handlers at once."""

    def __init__(self, app: App, gate: Gate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if gate.inflight >= gate.limit:
            gate.shed += 1
            await _overloaded(send, gate.limit, scope["path"])
            return
        gate.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.inflight -= 1


async def _overloaded(send: Send, limit: int, path: str) -> None:
    body = json.dumps(
        {
            "type": "urn:loopwise:problem:overloaded",
            "title": "Service unavailable",
            "status": 503,
            "detail": f"the server is handling its limit of {limit} requests at once "
            "(LOOPWISE_MAX_INFLIGHT); retry after 1 s",
            "instance": path,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
