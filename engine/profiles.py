"""The feature store's state: `Profile`, its cells and its encoding.

A `Profile` aggregates the behaviour events of one user (or one session of a user, or
everyone's events about one product: its popularity). The worker folds every event in
(engine.profilefold); serving reads a catalog's declared features from it
(engine.profileread), so the values a decision uses are computed from the same state by
the same code at any time, and are logged with the decision (no skew between what is
served and learned). What a catalog may declare is engine.featurespec.

What a profile holds, bounded whatever the traffic:
- one `Cell` per (event type, dimension, value): counts and value sums over sliding
  windows (5 min, 1 h, 24 h, 7 d), lifetime totals and the time of the last event, at most
  `MAX_GROUPS` values per (type, dimension), the least recent evicted;
- the last `RECENT` product events; the cart; lifetime spend; device and channel;
- in a user's profile, the profiles of its `MAX_SESSIONS` most recent sessions: one key
  per user holds all there is about the user, so erasure deletes one key.

A sliding window is a two-bucket counter: buckets of the window's width, and the count
over (now - width, now] is the current bucket plus the previous bucket weighted by the part
of it still inside the window (exact when events are spread evenly within a bucket; O(1)
to update and to read).

May import: the standard library, msgspec and engine.featurespec.
"""

from __future__ import annotations

import struct

import msgspec

from engine.featurespec import MAX_LAST_N

MAX_GROUPS = 32  # values kept per (event type, dimension)
RECENT = MAX_LAST_N  # product events kept, for last_n
MAX_SESSIONS = 8  # recent sessions kept inside a user profile
MAX_CART = 100
MAX_SEEN = 256  # client event ids remembered per user: a retry within them counts once
MAX_PROFILE_BYTES = 900_000  # under Kafka's default 1 MB message and Faust's request size


class Cell(msgspec.Struct, array_like=True):
    """Counts and sums of one (type, dimension, value): lifetime and per window."""

    last_ts: float
    count: float = 0.0
    total: float = 0.0
    # per window in WINDOWS order, 5 float64 each: bucket index, current and previous
    # count, current and previous sum; packed, so a profile decodes without a float object
    # per number (much faster than nested lists: docs/decisions/hot-paths.md)
    windows: bytes = b""

    def slot(self, index: int) -> tuple[float, float, float, float, float]:
        if not self.windows:
            return (0.0, 0.0, 0.0, 0.0, 0.0)
        return SLOT.unpack_from(self.windows, index * SLOT.size)


SLOT = struct.Struct("<5d")


class Recent(msgspec.Struct, array_like=True):
    ts: float
    kind: str
    product: str
    category: str | None
    brand: str | None
    price: float | None


class Profile(msgspec.Struct, kw_only=True):
    user_id: str
    session_id: str | None = None
    first_ts: float = 0.0
    last_ts: float = 0.0
    events: int = 0
    # "type|dimension" -> value -> cell (dimension "all" has the one value "")
    cells: dict[str, dict[str, Cell]] = msgspec.field(default_factory=dict)
    recent: list[Recent] = msgspec.field(default_factory=list)
    cart: dict[str, list[float]] = msgspec.field(default_factory=dict)  # id -> [qty, price]
    spend: float = 0.0
    purchases: int = 0
    price_sum: float = 0.0
    price_count: int = 0
    device: str | None = None
    channel: str | None = None
    # a user's recent sessions, oldest first, each an encoded Profile: a decision decodes
    # only the session it asks for
    sessions: dict[str, bytes] = msgspec.field(default_factory=dict)
    seen: list[str] = msgspec.field(default_factory=list)  # recent client event ids


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Profile)


def encode(profile: Profile) -> bytes:
    return _encoder.encode(profile)


def encode_bounded(profile: Profile) -> bytes:
    """`profile` encoded in at most MAX_PROFILE_BYTES (a Kafka message must fit), dropping
    its oldest sessions while it does not. The user's own aggregates alone stay below the
    bound whatever the input (tests/test_profiles.py computes the worst case)."""
    raw = encode(profile)
    while len(raw) > MAX_PROFILE_BYTES and profile.sessions:
        del profile.sessions[next(iter(profile.sessions))]
        raw = encode(profile)
    return raw


def decode(raw: bytes) -> Profile:
    return _decoder.decode(raw)


def session_of(user: Profile, session_id: str | None) -> Profile | None:
    """The profile of one of the user's recent sessions, if kept."""
    raw = user.sessions.get(session_id) if session_id is not None else None
    return decode(raw) if raw is not None else None


def key(user_id: str) -> bytes:
    """The feature store's table key of a user."""
    return user_id.encode()
