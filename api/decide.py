"""POST /v1/decide: context in, ranked actions with exact probabilities out.

Single-slot by default; with `slots` (a count, or named slots with their own features and
`exclude`) one action per slot, no action twice, each slot's probability conditional on
the slots before; a slot left with nothing is answered empty in its place.
With `actions` the request's own actions are the universe, the catalog all the rest
(engine.inline); with `defer_activation` the decision is logged as deferred, to be learned
only once activated (api.activate).

The seam: `decide_request(st, req)` is the whole decision for a parsed `DecideRequest`
(idempotency, features, constraints, the policy, the log, the answer) and returns the
answer's JSON bytes, exactly what the route sends. `decide_route` only authorises, reads
the body and types it. Another front end (the Personalizer-compatible adapter) builds a
`DecideRequest` and calls `decide_request`, so there is one decision path and one log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from api import bodies, requests
from api.requests import ActionRequest, DecideRequest, SlotRequest
from api.serving import answers, store
from api.serving.decided import Decided
from api.serving.mirror import StockView
from api.serving.state import State, of
from engine.actions import Action
from engine.catalog import Catalog
from engine.decision import Decision, Slot, decide
from engine.eligibility import eligible, known
from engine.errors import Conflict, InvalidInput, LimitExceeded
from engine.experiment import Assignment, arm_model, assign
from engine.features import Features, flatten
from engine.inline import Inline, parse_inline, with_inline
from engine.limits import Limits
from engine.records import ActionUsed, DecisionLogged, EmptySlotLogged, encode
from engine.validate import ID_RE, optional_id

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()
# A record the broker refuses (Kafka's message.max.bytes and aiokafka's max_request_size
# are 1 MiB by default) would stay at the head of the outbox for ever: refused here.
MAX_RECORD_BYTES = 900_000


async def decide_route(request: Request) -> Response:
    started = time.perf_counter()
    st = of(request)
    st.authorize(request, "storefront")
    req = requests.convert(await bodies.json_object(request, st.settings.limits), DecideRequest)
    answer = await decide_request(st, req, started=started)
    return Response(answer, media_type="application/json")


async def decide_request(st: State, req: DecideRequest, *, started: float | None = None) -> bytes:
    """The decision for `req`, logged, as the JSON the route answers (a repeat of an
    event id gets the kept answer with `"replay": true`). Raises the engine's errors
    (InvalidInput, LimitExceeded, Conflict, UnknownCatalog, ...) for the caller to map.
    `started` (perf_counter) is when the request arrived, for the decide-time metric."""
    started = time.perf_counter() if started is None else started
    event_id = _event_id(req.event_id)
    keys = req.action_keys() if req.actions is not None else None
    fingerprint = req.fingerprint(keys)
    now = time.time()
    replay = _replay(st, event_id, fingerprint, now)
    if replay is not None:
        st.metrics.counts["decisions_replayed"] += 1
        return replay
    made = make(st, req, event_id, now, keys)
    catalog, decision, inline, person = made.catalog, made.decision, made.inline, made.person
    for failure in decision.failures:  # answered by the safe policy instead
        if failure.cause == "error":  # the others are states, counted, not news per decision
            about = {"event_id": event_id, "catalog": catalog.name}  # fields (streams.logs)
            log.error("catalog %s: %s", catalog.name, failure.detail, extra=about)
            st.metrics.counts["policy_failures"] += 1
    st.failovers.count(catalog.name, decision)
    shown = Shown(
        catalog,
        decision,
        person,
        now,
        fingerprint,
        req.event_id is not None,
        made.assignment,
        inline.used if inline is not None else [],
        req.defer_activation,
    )
    records = _records(st, shown, made.stock, made.action_features)
    logged = _log(st, event_id, records)
    chosen = [s.actions[s.chosen].id for s in decision.slots]
    st.recent.record(catalog.name, now, chosen, decision.removed)
    if person and decision.slots:
        st.exposures.record(catalog.name, person, chosen, now, made.seen)
    answer = _json.encode(_response(st, catalog, event_id, decision, records, logged))
    until = now + catalog.learning.reward_wait_seconds
    st.replays.put(event_id, fingerprint, now, until, answer if shown.client_id else None)
    st.metrics.counts["decisions"] += 1
    st.metrics.removed(catalog.name, decision.removed)
    st.metrics.decide_seconds.observe(time.perf_counter() - started)
    if req.debug:  # the context as decided with and logged: the request's and the stored features
        debug = msgspec.json.decode(answer)
        debug.update(
            removed_ids=decision.removed,
            features=made.features,
            action_features=made.action_features,
        )
        answer = _json.encode(debug)
    return answer


class Made(NamedTuple):
    """A decision made and not yet logged, counted or answered, with what logging it
    needs."""

    catalog: Catalog  # with the request's own actions, when it sent them
    decision: Decision
    inline: Inline | None
    person: str | None  # the user's pseudonym
    seen: dict[str, list[float]] | None  # the user's exposures, as the caps read them
    stock: StockView
    assignment: Assignment | None
    features: Features  # the context decided with: the request's and the stored
    action_features: dict[str, Features]


def make(
    st: State, req: DecideRequest, event_id: str, now: float, keys: list[bytes] | None
) -> Made:
    """The decision for `req` with no side effect: nothing is logged, kept or counted
    (`decide_request` logs it; api.why asks what a context would get now). `keys`: the
    request's inline action keys (`req.action_keys()`), when it sent actions."""
    limits = st.settings.limits
    catalog = st.catalogs.latest(req.catalog)
    slots = _slots(req.slots, st)
    inline = _inline(catalog, req.actions, keys, slots, limits)
    if inline is not None:  # the request's actions, the catalog's everything else
        catalog = with_inline(catalog, inline.actions)
    features = flatten(req.context, limits)
    user_id = optional_id(req.user_id, "user_id")
    session_id = optional_id(req.session_id, "session_id")
    offered = eligible(
        catalog,
        _ids(req.candidates, "candidates", limits.max_actions),
        _ids(req.exclude, "exclude", limits.max_actions) or (),
    )
    slots = _slot_exclusions(slots, req.slots, catalog, offered)
    baseline = _baseline(catalog, req, slots)
    features = store.with_context(
        store.user_features(st, catalog, user_id, session_id, now), features
    )
    offered, action_features = store.popular(st, catalog, offered, now)
    person = st.pseudonyms.of(user_id) if user_id else None
    seen = st.exposures.of(catalog.name, person) if person else None
    stock = StockView(st.stock)
    assignment = _assignment(st, catalog, person or event_id)
    arm = assignment.arm if assignment else None
    policy, safe = st.failovers.ranker(catalog, st.replica, arm)
    decision = decide(
        catalog,
        offered,
        features,
        event_id,
        now,
        policy,
        exposures=seen,
        stock=stock,
        slots=slots,
        safe=safe,
        baseline=baseline,
    )
    return Made(
        catalog, decision, inline, person, seen, stock, assignment, features, action_features
    )


@dataclass(frozen=True, slots=True)
class Shown:
    """One decision as it is logged: what was decided, for whom, from which request."""

    catalog: Catalog
    decision: Decision
    person: str | None  # the user's pseudonym
    now: float
    fingerprint: bytes
    client_id: bool  # the event id came with the request
    assignment: Assignment | None  # the experiment arm, when the catalog runs one
    actions: list[ActionUsed]  # the request's own actions, as logged ([]: the catalog's)
    deferred: bool  # learned only once activated (api.activate)


def _baseline(catalog: Catalog, req: DecideRequest, slots: list[Slot] | None) -> str | None:
    """The action the storefront shows itself, in apprentice and logging modes: the
    request's `baseline`, else the first of `candidates`, else the catalog's first."""
    if catalog.mode == "online":
        if req.baseline is not None:
            raise InvalidInput(
                f"baseline is for catalogs in apprentice or logging mode; {catalog.name!r} "
                "is online",
                field="baseline",
            )
        return None
    if slots is not None:
        raise InvalidInput(
            f"catalog {catalog.name!r} is in {catalog.mode} mode, which decides single slots: "
            "send no slots",
            field="slots",
        )
    baseline = req.baseline or (req.candidates[0] if req.candidates else catalog.actions[0].id)
    if baseline not in catalog.index:
        raise InvalidInput(
            f"baseline {baseline!r} is not an action of catalog {catalog.name!r}", field="baseline"
        )
    return baseline


def _assignment(st: State, catalog: Catalog, unit: str) -> Assignment | None:
    """The arm of this user (or event) in the catalog's experiment, if it runs one."""
    experiment = catalog.experiment
    if experiment is None:
        return None
    return assign(experiment, unit, st.replica.results.stopped(catalog.name, experiment))


def _event_id(given: str | None) -> str:
    event_id = given if given is not None else uuid.uuid4().hex
    if not ID_RE.fullmatch(event_id) or "/" in event_id:
        raise InvalidInput(
            "event_id must be 1-128 printable characters without '/' (slot events use it)",
            field="event_id",
        )
    return event_id


def _replay(st: State, event_id: str, fingerprint: bytes, now: float) -> bytes | None:
    """The answer to repeat for a request already decided, or None for a new event id;
    raises Conflict when the id names another decision or can no longer be replayed."""
    seen = st.replays.get(event_id)
    if seen is None:
        return None
    when = f"decided at {seen.decided:.3f}"
    if seen.fingerprint != fingerprint:
        raise Conflict(
            f"event_id {event_id!r} was {when} for another request; an event id names one "
            "decision: send a new one",
            field="event_id",
        )
    if seen.answer is None or now >= seen.until:
        why = (
            "its reward window has closed"
            if now >= seen.until
            else "its id was generated by Loopwise, so its answer was not kept"
        )
        raise Conflict(
            f"event_id {event_id!r} was {when} and cannot be replayed: {why}; send a new one",
            field="event_id",
        )
    return seen.answer[:-1] + b',"replay":true}'


def _records(
    st: State, shown: Shown, stock: StockView, action_features: dict[str, Features]
) -> list[DecisionLogged]:
    """The decision as it is logged: one record per slot, in slot order."""
    catalog, decision, now = shown.catalog, shown.decision, shown.now
    removed = {reason: len(ids) for reason, ids in decision.removed.items()}
    inventory = catalog.constraints.inventory
    assignment = shown.assignment
    model = catalog.name
    if assignment is not None and assignment.arm.kind in ("learning", "frozen"):
        model = arm_model(catalog.name, assignment.arm.name)
    model_version = st.replica.model_version(model)
    empty = [EmptySlotLogged(e.position, e.slot.id, e.reason) for e in decision.empty]
    records: list[DecisionLogged] = []
    for position, s in enumerate(decision.slots):
        sku = inventory.sku(s.actions[s.chosen]) if inventory else None
        levels = {sku: stock[sku]} if sku is not None and sku in stock else {}
        records.append(
            DecisionLogged(
                event_id=s.event_id,
                ts=now,
                catalog=catalog.name,
                catalog_version=catalog.version,
                user_id=shown.person,
                context=s.context,
                eligible=[a.id for a in s.actions],
                pmf=[float(p) for p in s.pmf],
                chosen=s.chosen,
                probability=s.probability,
                policy=s.policy,
                model_version=model_version,
                wait_seconds=catalog.learning.reward_wait_seconds,
                default_reward=catalog.learning.default_reward,
                aggregation=catalog.learning.aggregation,
                slot=s.slot.id if s.slot else None,
                fallback=s.fallback,
                fallback_reason=s.fallback_reason,
                removed=removed,
                stock=levels,
                action_features={
                    a.id: action_features[a.id] for a in s.actions if a.id in action_features
                },
                ranking=s.ranking(),
                slots=len(decision.slots) if s.slot else 0,
                position=position,
                request=shown.fingerprint.hex(),
                client_event_id=shown.client_id,
                origin=st.origin,
                pseudonyms=st.pseudonyms.key_id,
                experiment=catalog.experiment.name if assignment and catalog.experiment else None,
                arm=assignment.arm.name if assignment else None,
                arm_probability=assignment.probability if assignment else 1.0,
                mode=catalog.mode,
                model_choice=s.model_choice,
                model_probability=s.model_probability,
                actions=shown.actions,
                deferred=shown.deferred,
                empty_slots=empty,
            )
        )
    return records


def _log(st: State, event_id: str, records: list[DecisionLogged]) -> bool:
    """Send the records and index them for rewards and activations; whether the outbox
    took them all. A record the broker could never take is refused before any is sent."""
    raws = [encode(r) for r in records]
    for r, raw in zip(records, raws, strict=True):
        if len(raw) > MAX_RECORD_BYTES:
            raise LimitExceeded(
                f"the decision's record {r.event_id!r} would be {len(raw)} bytes, more than "
                f"the {MAX_RECORD_BYTES} a broker message may carry: send a smaller context "
                "or fewer actions",
                field="body",
            )
    logged = True
    for r, raw in zip(records, raws, strict=True):
        ok = st.outbox.put(st.settings.topic("decisions"), r.event_id.encode(), raw)
        st.decisions.put(r.event_id, Decided(r.catalog, r.ts, r.wait_seconds, r.deferred))
        if not ok:
            st.metrics.counts["decisions_unlogged"] += 1
        logged = logged and ok
    if records and records[0].slot is not None:  # a slate: activated by its event id
        st.decisions.put_slate(event_id, [r.event_id for r in records])
    return logged


def _inline(
    catalog: Catalog,
    actions: list[ActionRequest] | None,
    keys: list[bytes] | None,
    slots: list[Slot] | None,
    limits: Limits,
) -> Inline | None:
    """The request's own actions, checked (None: it decides over the catalog's)."""
    if actions is None:
        if not catalog.actions:
            raise InvalidInput(
                f"catalog {catalog.name!r} stores no actions: send them in actions",
                field="actions",
            )
        return None
    return parse_inline(actions, limits, len(slots) if slots else 1, keys)


def _response(
    st: State,
    catalog: Catalog,
    event_id: str,
    decision: Decision,
    records: list[DecisionLogged],
    logged: bool,
) -> dict[str, object]:
    """The answer as it is kept for replays: `debug` adds only what is not kept."""
    if records:
        return answers.answer(event_id, records, logged)
    return {
        "event_id": event_id,
        "policy": None,
        "model_version": st.replica.model_version(catalog.name),
        "catalog_version": catalog.version,
        "logged": logged,
        "removed": {reason: len(ids) for reason, ids in decision.removed.items()},
        "ranking": [],
        "chosen": None,
        "fallback": False,
        "reason": decision.reason,
    }


def _slots(raw: int | list[SlotRequest] | None, st: State) -> list[Slot] | None:
    limit = st.settings.limits.max_slots
    if raw is None:
        return None
    if isinstance(raw, int):
        if not 1 <= raw <= limit:
            raise LimitExceeded(f"slots must be between 1 and {limit}, got {raw}", field="slots")
        return [Slot(str(k), {}) for k in range(raw)]
    if not raw:
        raise InvalidInput("slots must be a number or a non-empty array of slots", field="slots")
    if len(raw) > limit:
        raise LimitExceeded(
            f"slots has {len(raw)} entries, more than the limit of {limit}", field="slots"
        )
    out: list[Slot] = []
    for i, item in enumerate(raw):
        where = f"slots[{i}]"
        if not ID_RE.fullmatch(item.id) or "/" in item.id:
            raise InvalidInput(
                f"{where}.id must be 1-128 printable characters without '/'", field=f"{where}.id"
            )
        if any(s.id == item.id for s in out):
            raise InvalidInput(f"{where}.id {item.id!r} appears twice", field=f"{where}.id")
        features = flatten(item.features, st.settings.limits, field=f"{where}.features")
        _ids(item.exclude, f"{where}.exclude", st.settings.limits.max_actions)
        out.append(Slot(item.id, features))
    return out


def _slot_exclusions(
    slots: list[Slot] | None,
    raw: int | list[SlotRequest] | None,
    catalog: Catalog,
    offered: Sequence[Action],
) -> list[Slot] | None:
    """The slots with their own `exclude`, each id an action of the catalog (of the
    request's actions when sent), as the request's `exclude` is; a slot may not exclude
    every action the request offers (as `exclude` may not)."""
    if slots is None or not isinstance(raw, list):
        return slots
    out = []
    for i, (slot, item) in enumerate(zip(slots, raw, strict=True)):
        if item.exclude is None:
            out.append(slot)
            continue
        where = f"slots[{i}].exclude"
        known(catalog, item.exclude, where)
        exclude = frozenset(item.exclude)
        if all(a.id in exclude for a in offered):
            raise InvalidInput(
                f"{where} leaves this slot no action after candidates and exclude", field=where
            )
        out.append(Slot(slot.id, slot.features, exclude))
    return out


def _ids(raw: list[str] | None, name: str, limit: int) -> list[str] | None:
    if raw is not None and len(raw) > limit:
        raise LimitExceeded(
            f"{name} has {len(raw)} ids, more than the limit of {limit}", field=name
        )
    return raw
