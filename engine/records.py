"""The messages that travel between the API, the agents and the model replicas.

msgspec Structs with a `type` tag: one decoder reads any of them, and an unknown or
malformed message fails decoding (to be logged and skipped), never half-parsed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.behaviour import BehaviourObserved, UserErased
from engine.errors import InvalidInput
from engine.features import Features


class ActionUsed(msgspec.Struct, array_like=True, frozen=True):
    """An action the request sent with itself (engine.inline), as decided with: its id,
    features (flattened) and metadata. A catalog's stored actions are not logged: the
    logged catalog version names them."""

    id: str
    features: Features
    metadata: dict[str, Any] = {}


class EmptySlotLogged(msgspec.Struct, array_like=True, frozen=True):
    """A slot of a slate that nothing was left for (engine.decision.EmptySlot): it has no
    record of its own, so the slate's records name it for the answer."""

    position: int  # its place among the slots asked for, from 0
    slot: str
    reason: str


class DecisionLogged(msgspec.Struct, tag="decision", kw_only=True, frozen=True):
    event_id: str
    ts: float
    catalog: str
    catalog_version: int
    user_id: str | None  # the user's keyed pseudonym (api.serving.pseudonyms), never the id sent
    context: Features
    eligible: list[str]
    pmf: list[float]
    chosen: int
    probability: float
    policy: str
    model_version: str
    wait_seconds: float
    default_reward: float
    aggregation: str
    slot: str | None = None  # multi-slot: this slot's id; probability is conditional
    fallback: bool = False  # shown by the fallback (nothing eligible, or the model did not answer)
    fallback_reason: str | None = None  # why, when `fallback`
    # the experiment arm that decided (engine.experiment), and the probability of that arm
    # for this user or event; `probability` is the shown action's, given the arm
    experiment: str | None = None
    arm: str | None = None
    arm_probability: float = 1.0
    # apprentice and logging modes: the catalog's mode and the policy's own draw (the
    # shown action is the request's baseline, probability 1)
    mode: str = "online"
    model_choice: str | None = None
    model_probability: float = 0.0
    removed: dict[str, int] = {}  # actions removed by each constraint, before the policy
    stock: dict[str, float] = {}  # live stock of the shown SKUs, as decided with
    # features joined to actions at decision time (the feature store's per-action
    # aggregates), by action id: learned with exactly these values
    action_features: dict[str, Features] = {}
    # what another serving process needs to answer for this decision as its maker did
    ranking: list[int] = []  # indices into `eligible` in the order the answer listed them
    slots: int = 0  # multi-slot: how many slots the slate filled (0: a single decision)
    position: int = 0  # multi-slot: this slot's place in the slate, from 0
    request: str = ""  # the request's fingerprint (hex): a repeat must match it
    client_event_id: bool = False  # the event id came with the request (its answer is kept)
    origin: str = ""  # the serving process that decided
    pseudonyms: str = ""  # the id of the key that pseudonymised user_id
    # the request's own actions, when it sent them: its whole action universe (`eligible`
    # names the ones left after the constraints); empty: the catalog version's actions
    actions: list[ActionUsed] = []
    deferred: bool = False  # decided with defer_activation: learned only once activated
    # multi-slot: the slate's slots left empty, on every record of the slate (`slots`
    # and `position` count the filled ones only)
    empty_slots: list[EmptySlotLogged] = []


class RewardObserved(msgspec.Struct, tag="reward", kw_only=True, frozen=True):
    event_id: str
    reward_id: str
    value: float
    ts: float


class EventActivated(msgspec.Struct, tag="activation", kw_only=True, frozen=True):
    """A deferred decision (or one slot of it) was shown after all: learn it. Sent on
    the rewards topic, keyed by the event id, so the join meets it with its decision."""

    event_id: str
    ts: float


class Tick(msgspec.Struct, tag="tick", kw_only=True, frozen=True):
    """A clock message a timer sends to each partition so expiry runs inside the stream."""

    ts: float


class TrainingExample(msgspec.Struct, tag="training", kw_only=True, frozen=True):
    event_id: str
    catalog: str
    catalog_version: int
    context: Features
    eligible: list[str]
    chosen: int
    probability: float
    reward: float
    rewards: int
    reason: str  # "reward" (one or more rewards in the window) or "default" (none)
    decided_ts: float
    emitted_ts: float
    action_features: dict[str, Features] = {}  # as in DecisionLogged
    experiment: str | None = None  # as in DecisionLogged
    arm: str | None = None
    arm_probability: float = 1.0
    pmf: list[float] = []  # the logged pmf over `eligible` (off-policy evaluation needs it)
    mode: str = "online"  # as in DecisionLogged
    model_choice: str | None = None
    actions: list[ActionUsed] = []  # as in DecisionLogged: learned with exactly these
    slot: str | None = None  # as in DecisionLogged: a slate's slot (performance per slot)


class InventoryUpdate(msgspec.Struct, tag="inventory", kw_only=True, frozen=True):
    """The live stock level of one SKU; the newest `ts` wins."""

    sku: str
    level: float
    ts: float


Message = (
    DecisionLogged
    | RewardObserved
    | EventActivated
    | Tick
    | TrainingExample
    | InventoryUpdate
    | BehaviourObserved
    | UserErased
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


_stock_encoder = msgspec.msgpack.Encoder()
_stock_decoder = msgspec.msgpack.Decoder(tuple[float, float])


def encode_stock(level: float, ts: float) -> bytes:
    return _stock_encoder.encode((level, ts))


def decode_stock(raw: bytes) -> tuple[float, float]:
    """(level, ts) as kept in the stock table and its replicas."""
    return _stock_decoder.decode(raw)


def decode(raw: bytes) -> Message:
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"undecodable message: {exc}", field="message") from exc
