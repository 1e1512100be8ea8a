"""The stages of one decision, each timed alone on the objects the API uses.

`shape_cost` times each stage in a loop over many calls with inputs precomputed from the
stage before it (so timers do not sit inside the measured work), then the real handler
(`api.decide.decide_route`) end to end on a Starlette Request over the same stores, the
replica learning one training message, and the baseline prediction by squarecb. The model
has learned TAUGHT examples first and the feature store holds a rich profile per user, as
a serving process would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from api.decide import decide_route
from api.serving import store
from api.serving.decided import Decided
from api.serving.state import State
from benchmarks.shapes import Shape, catalog_body, decide_body
from engine import profilefold, profiles, vwformat
from engine.actions import Action
from engine.behaviour import BehaviourObserved, Product
from engine.eligibility import eligible
from engine.features import Features, flatten
from engine.learning import Exploration, Learning
from engine.records import DecisionLogged, TrainingExample, encode
from engine.sampling import normalise, ranking, rng_for, sample
from policies.base import Example
from policies.vw import CB, VWPolicy

TAUGHT = 300  # examples learned before a shape is measured (see _teach)
STAGES = (
    "json_parse",
    "feature_flattening",
    "feature_store_join",
    "catalog_and_eligibility",
    "example_building",
    "vw_predict",
    "sampling",
    "logging_outbox_put",
    "response_encode",
)
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _cpu_us(fn: Callable[[int], object], calls: int) -> tuple[float, float]:
    """CPU and wall microseconds per call of fn(i), after a short warm-up."""
    for i in range(min(20, calls)):
        fn(i)
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    for i in range(calls):
        fn(i)
    return (time.process_time_ns() - cpu) / calls / 1e3, (
        time.perf_counter_ns() - wall
    ) / calls / 1e3


def _teach(policy: VWPolicy, features: Sequence[Features], actions: Sequence[Action]) -> None:
    """Learn TAUGHT examples before measuring, as a serving model has: VW's weight table is
    allocated untouched, and a predict that reads only untouched pages measured 2.5 ms at
    200 x 1,000 against 3.5 ms once the model had learned these (its weights then spread
    over the whole table: cache misses)."""
    rng = np.random.default_rng(0)
    for i in range(TAUGHT):
        chosen = int(rng.integers(len(actions)))
        reward = float(rng.random() < 0.1)
        example = Example(
            features[i % len(features)], list(actions), chosen, 1 / len(actions), reward
        )
        policy.learn(example)


def shape_cost(state: State, shape: Shape, calls: int) -> dict[str, object]:
    limits = state.settings.limits
    catalog, _ = state.catalogs.put(shape.catalog, catalog_body(shape), time.time())
    model = state.replica.policy(catalog)
    policy = model.policy
    assert isinstance(policy, VWPolicy)
    n = 64  # distinct requests, cycled
    bodies = [decide_body(shape, i) for i in range(n)]
    parsed = [_decoder.decode(b) for b in bodies]
    features = [flatten(p["context"], limits) for p in parsed]
    actions = eligible(catalog, None, ())
    _teach(policy, features, actions)
    now = time.time()
    _feature_store(state, [str(p["user_id"]) for p in parsed], actions, now)
    ranked = [policy.ranked(f, actions) for f in features]
    pmfs = [normalise(pmf) for pmf, _ in ranked]
    scores = [s for _, s in ranked]

    def joined(i: int) -> object:
        user = str(parsed[i % n]["user_id"])
        stored = store.user_features(state, catalog, user, "s0", now)
        return store.with_context(stored, features[i % n]), store.popular(
            state, catalog, actions, now
        )

    def example(i: int) -> object:
        """The shared line parsed; the actions' parsed examples come from the policy's cache."""
        shared = policy._ws.parse([vwformat.shared_line(features[i % n])], CB)
        examples = shared + policy._action_examples(actions)
        policy._ws.finish_example(shared)
        return examples

    built = _built(policy, features, actions)
    ids = [uuid.uuid4().hex for _ in range(n)]
    topic = state.settings.topic("decisions")

    def parse(i: int) -> object:
        body = _decoder.decode(bodies[i % n])
        return [k for k in body if k not in ("catalog", "context", "user_id", "event_id")]

    def logging_put(i: int) -> object:
        pmf = pmfs[i % n]
        event_id = f"{ids[i % n]}-{i}"
        record = DecisionLogged(
            event_id=event_id,
            ts=time.time(),
            catalog=catalog.name,
            catalog_version=catalog.version,
            user_id="u1",
            context=features[i % n],
            eligible=[a.id for a in actions],
            pmf=[float(p) for p in pmf],
            chosen=0,
            probability=float(pmf[0]),
            policy=policy.name,
            model_version=state.replica.model_version(catalog.name),
            wait_seconds=catalog.learning.reward_wait_seconds,
            default_reward=0.0,
            aggregation="earliest",
        )
        state.outbox.put(topic, event_id.encode(), encode(record))
        state.decisions.put(event_id, Decided(catalog.name, time.time(), 10.0))
        return None

    def sampling(i: int) -> object:
        pmf = normalise(pmfs[i % n])
        sample(pmf, rng_for(f"{ids[i % n]}-{i}"))
        return ranking(pmf, scores[i % n])

    def predict(i: int) -> object:
        """VW's prediction, and its estimates read off the examples (for the ranking)."""
        examples = built[i % n]
        return policy._ws.predict(examples), [-e.get_partial_prediction() for e in examples[1:]]

    def response(i: int) -> bytes:
        pmf = pmfs[i % n]
        order = ranking(pmf, scores[i % n])
        return _encoder.encode(
            {
                "event_id": ids[i % n],
                "ranking": [{"id": actions[j].id, "probability": float(pmf[j])} for j in order],
                "chosen": {"id": actions[0].id, "probability": float(pmf[0])},
                "policy": policy.name,
                "model_version": "1.0",
                "catalog_version": catalog.version,
                "fallback": False,
                "logged": True,
            }
        )

    fns: dict[str, Callable[[int], object]] = {
        "json_parse": parse,
        "feature_flattening": lambda i: flatten(parsed[i % n]["context"], limits),
        "catalog_and_eligibility": lambda i: eligible(
            state.catalogs.latest(shape.catalog), None, ()
        ),
        "feature_store_join": joined,
        "example_building": example,
        "vw_predict": predict,
        "sampling": sampling,
        "logging_outbox_put": logging_put,
        "response_encode": response,
    }
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    for name in STAGES:
        cpu[name], wall[name] = _cpu_us(fns[name], calls)
    handler_cpu, handler_wall = _handler_us(state, shape, calls)
    learn_cpu, learn_wall = _learning_us(state, catalog.name, features, actions, calls)
    squarecb_cpu, _ = _squarecb_predict_us(features, actions, calls)
    state.outbox.pending.clear()  # nothing will drain it: keep memory flat between shapes
    total = sum(cpu.values())
    return {
        "stages_cpu_us": cpu,
        "stages_wall_us": wall,
        "sum_of_stages_cpu_us": total,
        "share": {k: v / total for k, v in cpu.items()},
        "handler_cpu_us": handler_cpu,
        "handler_wall_us": handler_wall,
        "handler_glue_cpu_us": handler_cpu - total,
        "learn_cpu_us": learn_cpu,
        "learn_wall_us": learn_wall,
        "vw_predict_squarecb_cpu_us": squarecb_cpu,
        "vw_predict_over_squarecb": cpu["vw_predict"] / squarecb_cpu,
    }


def _built(policy: VWPolicy, features: Sequence[Features], actions: Sequence[Action]) -> list[Any]:
    """Each context's parsed shared line and the cached action examples, ready to predict."""
    return [
        policy._ws.parse([vwformat.shared_line(f)], CB) + policy._action_examples(actions)
        for f in features
    ]


def _squarecb_predict_us(
    features: Sequence[Features], actions: Sequence[Action], calls: int
) -> tuple[float, float]:
    """The baseline of the vw_predict stage: the same prediction by squarecb with coin
    betting (the default until 2026-11-27, and the choice for a very wide catalog),
    taught the same way. The default's RegCB also computes a confidence per action."""
    policy = VWPolicy(Learning(exploration=Exploration("squarecb"), optimizer="coin"))
    try:
        _teach(policy, features, actions)
        built = _built(policy, features, actions)
        return _cpu_us(lambda i: policy._ws.predict(built[i % len(built)]), calls)
    finally:
        policy.close()


def _learning_us(
    state: State,
    catalog: str,
    features: Sequence[Features],
    actions: Sequence[Action],
    calls: int,
) -> tuple[float, float]:
    """What the API's model replica spends on one training message, from its bytes on the
    training log to the model (decode, ledger, catalog checks, VW): every decision comes
    back as one, and it runs on the loop that serves decisions."""
    version = state.catalogs.latest(catalog).version
    now = time.time()
    k = len(actions)
    messages = [
        encode(
            TrainingExample(
                event_id=f"learn-{catalog}-{i}",
                catalog=catalog,
                catalog_version=version,
                context=features[i % len(features)],
                eligible=[a.id for a in actions],
                chosen=(i * 7) % k,
                probability=1 / k,
                reward=float(i % 10 == 0),
                rewards=int(i % 10 == 0),
                reason="reward" if i % 10 == 0 else "default",
                decided_ts=now,
                emitted_ts=now,
            )
        )
        for i in range(calls + min(20, calls))  # the warm-up too: each id is learned once
    ]
    offsets = itertools.count()
    before = state.replica.counts["learned"]

    def apply(_: int) -> None:
        offset = next(offsets)
        state.replica.apply(0, offset, None, messages[offset])

    cpu, wall = _cpu_us(apply, calls)
    learned = state.replica.counts["learned"] - before
    assert learned == len(messages), f"learned {learned} of {len(messages)} training messages"
    return cpu, wall


def _feature_store(state: State, users: list[str], actions: Sequence[Action], now: float) -> None:
    """A rich profile per user (200 events over 5 sessions, the last hour) and popularity
    for every action, straight into this process's replicas, as the worker would leave them."""
    categories, brands = (
        ("running", "yoga", "outdoor", "cycling", "tennis"),
        ("acme", "zen", "peak"),
    )
    popular: dict[str, profiles.Profile] = {}  # product id -> its popularity
    for u, user in enumerate(users):
        profile = None
        for k in range(200):
            product = Product(
                id=actions[(u + k) % len(actions)].id,
                category=categories[k % len(categories)],
                brand=brands[k % len(brands)],
                price=10.0 + k % 90,
            )
            kind = ("product_view", "product_view", "add_to_cart", "page_view")[k % 4]
            event = BehaviourObserved(
                kind=kind,
                user_id=user,
                ts=now - 3600 + k * 18,
                session_id=f"s{k % 5}",
                product=product,
                device="mobile",
            )
            profile = profilefold.observe(profile, event)
            stats = popular.get(product.id)
            popular[product.id] = profilefold.observe_product(stats, event)
        assert profile is not None
        state.profiles.data[profiles.key(user)] = profiles.encode(profile)
    for product_id, stats in popular.items():
        state.popularity.data[product_id.encode()] = profiles.encode(stats)


async def decide_directly(state: State, body: bytes) -> None:
    """One call of the real `api.decide.decide_route` on a Starlette Request, no server,
    the state's own stores; raises unless it answers 200."""
    from starlette.requests import Request

    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/decide",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
        ],
        "query_string": b"",
        "state": {"lw": state},
    }
    response = await decide_route(Request(scope, receive))
    if response.status_code != 200:
        raise RuntimeError(f"decide answered {response.status_code}: {response.body[:200]!r}")


def _handler_us(state: State, shape: Shape, calls: int) -> tuple[float, float]:
    """The real decide handler (`decide_directly`), CPU and wall time per call."""
    bodies = [decide_body(shape, i) for i in range(64)]

    async def one(i: int) -> None:
        await decide_directly(state, bodies[i % len(bodies)])

    async def loop() -> tuple[float, float]:
        for i in range(20):
            await one(i)
        cpu, wall = time.process_time_ns(), time.perf_counter_ns()
        for i in range(calls):
            await one(i)
        return (time.process_time_ns() - cpu) / calls / 1e3, (
            time.perf_counter_ns() - wall
        ) / calls / 1e3

    return asyncio.run(loop())
