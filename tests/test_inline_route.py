"""POST /v1/decide with the request's own actions, in process: exact logged propensities
under the catalog's constraints, the inline limits as 422s naming the field, the same
answer as the stored catalog's over the same actions (a property), learning them exactly,
and deferred activation's statuses."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api.requests import ActionRequest
from api.serving import store
from engine import profilefold, profiles
from engine.behaviour import BehaviourObserved, Product
from engine.inline import parse_inline, with_inline
from engine.join import training_example
from engine.limits import Limits
from engine.records import DecisionLogged, EventActivated, decode, encode_stock
from tests.routes import app_client, problem, state_of

SHOP = {
    "actions": [],  # every request sends its own
    "learning": {"exploration": {"algorithm": "epsilon", "epsilon": 0.3}},
    "constraints": {
        "rules": [{"name": "no-kids", "exclude": "'kids' in action.tags"}],
        "inventory": {"sku_field": "sku"},
        "boost": {"b": 3.0},
        "exploration_floor": 0.1,
        "diversity": {"max_per": {"brand": 1}},
    },
}
LIMITS = Limits(
    max_inline_actions=8,
    max_action_features=4,
    max_action_bytes=400,
    max_metadata_bytes=120,
    max_inline_bytes=2_000,
)


def item(aid: str, brand: str = "acme", tags: list[str] | None = None, **extra: Any) -> Any:
    return {
        "id": aid,
        "features": {"item": {"brand": brand, "price": 10.0 + len(aid)}},
        "metadata": {"brand": brand, "tags": tags or [], **extra},
    }


ACTIONS = [
    item("a"),
    item("b", brand="zeta"),
    item("c", brand="kiddo", tags=["kids"]),
    item("d", brand="omega", sku="OUT-1"),
    item("e", brand="omega"),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path, limits=LIMITS) as c:
        assert c.put("/v1/catalogs/shop", json=SHOP).status_code == 201
        state_of(c).stock.apply(0, 0, b"OUT-1", encode_stock(0.0, time.time()))
        yield c


def logged(c: TestClient, n: int = 1) -> list[DecisionLogged]:
    """The last `n` decision records in the outbox (no broker runs)."""
    out = []
    for p in list(state_of(c).outbox.pending)[::-1]:
        m = decode(p.value)
        if isinstance(m, DecisionLogged):
            out.append(m)
        if len(out) == n:
            break
    return out[::-1]


def test_inline_actions_decide_under_the_constraints_with_exact_logged_propensities(
    client: TestClient,
) -> None:
    body = {"catalog": "shop", "actions": ACTIONS, "context": {"page": "home"}}
    first = client.post("/v1/decide", json=body).json()
    assert first["removed"] == {"inventory": 1, "rule:no-kids": 1}
    pmf = {r["id"]: r["probability"] for r in first["ranking"]}
    assert set(pmf) == {"a", "b", "e"} and sum(pmf.values()) == pytest.approx(1.0)
    assert pmf["b"] > pmf["a"], "the catalog's boost by id reaches an inline action"
    (record,) = logged(client)
    assert [a.id for a in record.actions] == ["a", "b", "c", "d", "e"], "all sent, as used"
    assert record.actions[3].metadata == {"brand": "omega", "tags": [], "sku": "OUT-1"}
    assert record.actions[0].features == {"item": {"brand": "acme", "price": 11.0}}
    assert record.eligible == ["a", "b", "e"]
    assert record.probability == record.pmf[record.chosen] == first["chosen"]["probability"]
    shown: Counter[str] = Counter()
    n = 600
    for _ in range(n):
        shown[client.post("/v1/decide", json=body).json()["chosen"]["id"]] += 1
    for aid, p in pmf.items():  # the model learns nothing here: one pmf throughout
        assert abs(shown[aid] / n - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-9, (aid, shown, pmf)


def test_slates_candidates_exclude_and_the_event_id_work_with_inline_actions(
    client: TestClient,
) -> None:
    body = {"catalog": "shop", "actions": ACTIONS, "slots": 3, "event_id": "slate-1"}
    slate = client.post("/v1/decide", json=body).json()
    chosen = [s["chosen"]["id"] for s in slate["slots"]]
    brands = {a["id"]: a["metadata"]["brand"] for a in ACTIONS}
    assert len(chosen) == 3 and len({brands[a] for a in chosen}) == 3, "diversity by metadata"
    records = logged(client, 3)
    assert all(len(r.actions) == 5 for r in records), "each slot's record carries them"
    again = client.post("/v1/decide", json=body).json()
    assert again["replay"] is True and again["slots"] == slate["slots"]
    other = {**body, "actions": [*ACTIONS[:4], item("e", brand="other")]}
    problem(client.post("/v1/decide", json=other), 409, "event_id", kind="conflict")
    narrowed = client.post(
        "/v1/decide", json={"catalog": "shop", "actions": ACTIONS, "candidates": ["a", "e"]}
    ).json()
    assert {r["id"] for r in narrowed["ranking"]} <= {"a", "e"}
    excluded = client.post(
        "/v1/decide", json={"catalog": "shop", "actions": ACTIONS, "exclude": ["a", "b"]}
    ).json()
    assert [r["id"] for r in excluded["ranking"]] == ["e"]
    wrong = problem(
        client.post("/v1/decide", json={**body, "event_id": None, "candidates": ["zz"]}),
        422,
        "candidates[0]",
    )
    assert "the request's actions" in wrong["detail"]


def test_a_catalog_without_stored_actions_needs_them_and_a_stored_one_is_replaced(
    client: TestClient,
) -> None:
    found = problem(client.post("/v1/decide", json={"catalog": "shop"}), 422, "actions")
    assert "stores no actions" in found["detail"]
    assert client.put("/v1/catalogs/stored", json={"actions": [item("x")]}).status_code == 201
    r = client.post("/v1/decide", json={"catalog": "stored", "actions": [item("y")]}).json()
    assert r["chosen"]["id"] == "y", "the request's actions are its universe"
    mode = client.put("/v1/catalogs/shop/mode", json={"mode": "apprentice"})
    assert mode.status_code == 200
    appr = client.post(
        "/v1/decide", json={"catalog": "shop", "actions": ACTIONS, "baseline": "e"}
    ).json()
    assert appr["chosen"] == {"id": "e", "probability": 1.0} and "model_choice" in appr


def _bad(n: int = 1, **change: Any) -> list[dict[str, Any]]:
    actions = [item(f"a{i}") for i in range(n)]
    actions[0] = {**actions[0], **change}
    return actions


@pytest.mark.parametrize(
    ("actions", "slots", "field", "fragment"),
    [
        ([item(f"a{i}") for i in range(9)], None, "actions", "max_inline_actions of 8"),
        ([], None, "actions", "at least one"),
        (_bad(features={"x": {f"f{k}": 1.0 for k in range(5)}}), None, "actions[0].features",
         "max_action_features of 4"),
        (_bad(features={"x": {"long": "v" * 400}}), None, "actions[0]", "max_action_bytes of 400"),
        (_bad(metadata={"note": "m" * 120}), None, "actions[0].metadata",
         "max_metadata_bytes of 120"),
        ([{"id": f"a{i}", "features": {"x": {"brand": "b" * 200}}} for i in range(8)], None,
         "actions", "max_inline_bytes of 2000"),
        ([item(f"a{i}") for i in range(8)], 3, "actions", "each of the 3 slots' records"),
        (_bad(id="a\nb"), None, "actions[0].id", "printable"),
        (_bad(id=""), None, "actions[0].id", "printable"),
        ([item("a"), item("b"), item("a")], None, "actions[2].id", "appears twice"),
        (_bad(colour="red"), None, "actions[0].colour", "not a known field"),
        (_bad(features=[1]), None, "actions[0].features", "must be an object"),
        (_bad(features={"x": {"n": 1e40}}), None, "actions[0].features.x.n", "max_abs_number"),
        ("a", None, "actions", "must be an array"),
    ],
)  # fmt: skip
def test_inline_limits_are_422s_naming_the_field_and_the_limit(
    client: TestClient, actions: object, slots: int | None, field: str, fragment: str
) -> None:
    body: dict[str, object] = {"catalog": "shop", "actions": actions}
    if slots:
        body["slots"] = slots
    found = problem(client.post("/v1/decide", json=body), 422, field)
    assert fragment in found["detail"], found


def test_a_record_the_broker_could_not_carry_is_refused_before_it_is_logged(
    tmp_path: Path,
) -> None:
    wide = Limits(max_body_bytes=4_000_000, max_inline_bytes=10**7, max_features=100_000)
    with app_client(tmp_path, limits=wide) as c:
        assert c.put("/v1/catalogs/shop", json=SHOP).status_code == 201
        big = {"page": {f"f{k}": "v" * 90 for k in range(10_000)}}
        before = len(state_of(c).outbox)
        r = c.post("/v1/decide", json={"catalog": "shop", "actions": ACTIONS, "context": big})
        found = problem(r, 422, "body")
        assert "a broker message may carry" in found["detail"]
        assert len(state_of(c).outbox) == before


# --- the same answer as the stored catalog's, and the same model ------------------------

ids = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    brands = st.sampled_from(["acme", "zeta", "omega"])
    actions = [
        {
            "id": aid,
            "features": {
                "item": {"price": draw(st.floats(0, 100, width=32)), "brand": draw(brands)}
            },
            "metadata": {
                "brand": draw(brands),
                "tags": draw(st.lists(st.just("kids"), max_size=1)),
            },
        }
        for aid in chosen
    ]
    constraints: dict[str, Any] = {
        "rules": [{"name": "kids", "exclude": "'kids' in action.tags"}],
        "exploration_floor": draw(st.sampled_from([0.0, 0.2])),
    }
    if draw(st.booleans()):
        constraints["boost"] = {draw(st.sampled_from(chosen)): 4.0}
    if draw(st.booleans()):
        constraints["pinned"] = draw(st.sampled_from(chosen))
    if draw(st.booleans()):
        constraints["diversity"] = {"max_per": {"brand": 1}}
    if draw(st.booleans()):
        constraints["frequency_caps"] = [
            {"name": "brand", "group": "brand", "limit": 1, "window_seconds": 60}
        ]
    request: dict[str, Any] = {
        "context": {"user": {"segment": draw(st.sampled_from(["x", "y"]))}},
        "user_id": "u1",
    }
    if draw(st.booleans()):
        request["candidates"] = draw(st.lists(st.sampled_from(chosen), min_size=1, unique=True))
    elif draw(st.booleans()):
        request["exclude"] = draw(st.lists(st.sampled_from(chosen), max_size=2, unique=True))
    slots = draw(st.sampled_from([None, 1, 2, 3]))
    if slots:
        request["slots"] = slots
    return {"actions": actions, "constraints": constraints, "request": request}


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    """Two serving processes: one decides over stored actions, one over inline ones."""
    with (
        app_client(tmp_path_factory.mktemp("stored")) as stored,
        app_client(tmp_path_factory.mktemp("inline")) as inline,
    ):
        yield stored, inline


LEARNING = {"exploration": {"algorithm": "squarecb"}, "optimizer": "adaptive"}


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_inline_and_stored_actions_give_the_same_answer(
    twins: tuple[TestClient, TestClient], case: dict[str, Any]
) -> None:
    stored, inline = twins
    name = f"p{uuid.uuid4().hex[:12]}"  # a new catalog: a new model on both sides
    body = {"learning": LEARNING, "constraints": case["constraints"]}
    ok = {200, 201}
    assert (
        stored.put(f"/v1/catalogs/{name}", json={**body, "actions": case["actions"]}).status_code
        in ok
    )
    assert inline.put(f"/v1/catalogs/{name}", json={**body, "actions": []}).status_code in ok
    for _ in range(3):  # caps and exposures count the decisions before
        request = {"catalog": name, **case["request"], "event_id": uuid.uuid4().hex}
        a = stored.post("/v1/decide", json=request)
        b = inline.post("/v1/decide", json={**request, "actions": case["actions"]})
        assert (a.status_code, a.json()) == (b.status_code, b.json())
        if a.status_code != 200 or not (a.json().get("slots") or a.json().get("chosen")):
            continue
        ra, rb = logged(stored, 1)[0], logged(inline, 1)[0]
        same = ("eligible", "pmf", "chosen", "probability", "removed", "ranking", "context")
        assert {k: getattr(ra, k) for k in same} == {k: getattr(rb, k) for k in same}
        assert ra.actions == [] and [x.id for x in rb.actions] == [x["id"] for x in case["actions"]]


def test_inline_examples_learn_the_same_model_as_stored_ones(
    twins: tuple[TestClient, TestClient],
) -> None:
    """The joined examples of both, applied to each process's replica: the same weights,
    and then the same answers (the model now has something to say)."""
    stored, inline = twins
    actions = [item(aid, brand=b) for aid, b in [("a", "acme"), ("b", "zeta"), ("c", "omega")]]
    body = {"learning": LEARNING, "constraints": {"exploration_floor": 0.1}}
    assert stored.put("/v1/catalogs/learn", json={**body, "actions": actions}).status_code == 201
    assert inline.put("/v1/catalogs/learn", json={**body, "actions": []}).status_code == 201
    for i in range(60):
        request = {"catalog": "learn", "context": {"u": {"s": "xy"[i % 2]}}, "event_id": f"l{i}"}
        a = stored.post("/v1/decide", json=request).json()
        b = inline.post("/v1/decide", json={**request, "actions": actions}).json()
        assert a == b
        value = float(a["chosen"]["id"] == ("a" if i % 2 else "b"))
        for client in (stored, inline):
            (record,) = logged(client)
            ex = training_example(record, value, 1, "reward", time.time())
            assert state_of(client).replica.learn(ex)
    models = [state_of(c).replica.policy(state_of(c).catalogs.latest("learn")) for c in twins]
    assert models[0].policy.learned == models[1].policy.learned == 60
    assert models[0].policy.save() == models[1].policy.save()
    request = {"catalog": "learn", "context": {"u": {"s": "x"}}, "event_id": "after"}
    assert stored.post("/v1/decide", json=request).json() == (
        inline.post("/v1/decide", json={**request, "actions": actions}).json()
    )


# --- deferred activation ---------------------------------------------------------------


def test_a_deferred_decision_says_so_and_activation_answers_its_status(
    client: TestClient,
) -> None:
    body = {"catalog": "shop", "actions": ACTIONS, "defer_activation": True}
    d = client.post("/v1/decide", json=body).json()
    assert d["deferred"] is True and logged(client)[0].deferred
    assert client.get(f"/v1/events/{d['event_id']}").json()["deferred"] is True
    for _ in range(2):  # twice: the same answer, and the join counts the second once
        r = client.post(f"/v1/events/{d['event_id']}/activate")
        assert r.status_code == 202 and r.json() == {
            "event_id": d["event_id"],
            "status": "activated",
        }
    sent = [decode(p.value) for p in state_of(client).outbox.pending]
    activations = [m for m in sent if isinstance(m, EventActivated)]
    assert [m.event_id for m in activations] == [d["event_id"]] * 2
    slate = client.post("/v1/decide", json={**body, "slots": 2}).json()
    r = client.post(f"/v1/events/{slate['event_id']}/activate").json()
    assert r["status"] == "activated"
    assert r["events"] == [s["event_id"] for s in slate["slots"]], "every slot"
    plain = client.post("/v1/decide", json={"catalog": "shop", "actions": ACTIONS}).json()
    r = client.post(f"/v1/events/{plain['event_id']}/activate").json()
    assert r["status"] == "not_deferred"
    quick = {"actions": [], "learning": {"reward_wait_seconds": 0.05}}
    assert client.put("/v1/catalogs/quick", json=quick).status_code == 201
    late = client.post("/v1/decide", json={**body, "catalog": "quick"}).json()
    time.sleep(0.1)
    r = client.post(f"/v1/events/{late['event_id']}/activate").json()
    assert r["status"] == "late" and "not learned" in r["detail"]
    never = client.post("/v1/events/never-decided/activate").json()
    assert never["status"] == "pending", "no broker: the log is not followed live"
    problem(client.post(f"/v1/events/{'x' * 129}/activate"), 422, "event_id")


def test_popularity_joins_each_request_s_own_actions(client: TestClient) -> None:
    """Two requests in one second sending an action of the same id with other features:
    each decides over its own, with the product's popularity joined (the join keeps the
    whole catalog's answer per second, which must not serve one request's actions to
    another)."""
    st = state_of(client)
    now = time.time()
    stats = None
    for k in range(2):
        seen = BehaviourObserved(
            kind="product_view", user_id="u", ts=now - k, product=Product(id="p1")
        )
        stats = profilefold.observe_product(stats, seen)
    assert stats is not None
    st.popularity.apply(0, 0, b"p1", profiles.encode(stats))
    body = {
        "actions": [],
        "features": [{"name": "views", "key": "action", "event": "product_view"}],
    }
    assert client.put("/v1/catalogs/popular", json=body).status_code == 201
    catalog = st.catalogs.latest("popular")
    for colour in ("red", "blue"):
        sent = [{"id": "x", "features": {"item": {"c": colour}}, "metadata": {"product_id": "p1"}}]
        inline = parse_inline(msgspec.convert(sent, list[ActionRequest]), st.settings.limits)
        scoped = with_inline(catalog, inline.actions)
        offered, extra = store.popular(st, scoped, scoped.actions, now)
        assert offered[0].features["item"] == {"c": colour}
        assert "views" in offered[0].features["popularity"] and extra["x"]["popularity"]
        answer = client.post(
            "/v1/decide", json={"catalog": "popular", "actions": sent, "debug": True}
        ).json()
        assert "views" in answer["action_features"]["x"]["popularity"]
