"""Reward join semantics: every decision is learned exactly once, whatever the order."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import join
from engine.records import (
    ActionUsed,
    DecisionLogged,
    EventActivated,
    RewardObserved,
    TrainingExample,
    decode,
    encode,
)

CONFIG = join.JoinConfig(orphan_seconds=100.0, retention_seconds=5.0)
DECIDED, WAIT = 1000.0, 10.0


def decision(
    aggregation: str = "earliest", default: float = 0.0, eid: str = "e1", ts: float = DECIDED
) -> DecisionLogged:
    return DecisionLogged(
        event_id=eid,
        ts=ts,
        catalog="c",
        catalog_version=1,
        user_id="u",
        context={"context": {"x": 1.0}},
        eligible=["a", "b"],
        pmf=[0.25, 0.75],
        chosen=1,
        probability=0.75,
        policy="vw:squarecb",
        model_version="1.0",
        wait_seconds=WAIT,
        default_reward=default,
        aggregation=aggregation,
    )


def reward(rid: str, value: float, ts: float, eid: str = "e1") -> RewardObserved:
    return RewardObserved(event_id=eid, reward_id=rid, value=value, ts=ts)


@dataclass(frozen=True)
class TickAt:
    ts: float


Message = DecisionLogged | RewardObserved | EventActivated | TickAt


def play(
    messages: list[Message],
) -> tuple[join.JoinEntry | None, list[TrainingExample], dict[str, int]]:
    entry: join.JoinEntry | None = None
    emitted: list[TrainingExample] = []
    counts: dict[str, int] = {}
    for m in messages:
        if isinstance(m, DecisionLogged):
            out = join.on_decision(entry, m, CONFIG)
        elif isinstance(m, RewardObserved):
            out = join.on_reward(entry, m, CONFIG)
        elif isinstance(m, EventActivated):
            out = join.on_activation(entry, m, CONFIG)
        elif entry is not None:
            out = join.on_tick(entry, m.ts, CONFIG)
        else:
            continue
        entry = out.entry
        if out.emit is not None:
            emitted.append(out.emit)
        for k, v in out.counts.items():
            counts[k] = counts.get(k, 0) + v
        # the codec round-trips every state the table may hold
        if entry is not None:
            assert join.decode_entry(join.encode_entry(entry)) == entry
    return entry, emitted, counts


rewards_strategy = st.lists(
    st.tuples(
        st.sampled_from(["r1", "r2", "r3", "r4"]),
        st.floats(min_value=-5, max_value=5, allow_nan=False),
        st.floats(min_value=DECIDED - 5, max_value=DECIDED + 2 * WAIT),
    ),
    max_size=6,
    unique_by=lambda r: r[0],
)


@settings(max_examples=300, deadline=None)
@given(
    aggregation=st.sampled_from(["earliest", "sum"]),
    rewards=rewards_strategy,
    copies=st.lists(st.integers(min_value=1, max_value=3), min_size=7, max_size=7),
    data=st.data(),
)
def test_final_value_matches_the_aggregation_for_any_order_and_duplicates(
    aggregation: str,
    rewards: list[tuple[str, float, float]],
    copies: list[int],
    data: st.DataObject,
) -> None:
    d = decision(aggregation, default=-1.0)
    messages: list[Message] = [d] * copies[0]
    for (rid, value, ts), n in zip(rewards, copies[1:], strict=False):
        messages += [reward(rid, value, ts)] * n
    order = data.draw(st.permutations(messages))
    end = DECIDED + WAIT
    entry, emitted, counts = play(
        [*order, TickAt(end + 1), TickAt(end + CONFIG.retention_seconds + 1)]
    )

    assert len(emitted) == 1, "a decision is learned exactly once"
    assert entry is None, "the entry is deleted after its retention"
    # the expected value, from the delivery order of first copies of in-window rewards
    seen: list[str] = []
    values = {rid: (v, ts) for rid, v, ts in rewards}
    for m in order:
        if isinstance(m, RewardObserved) and m.reward_id not in seen:
            seen.append(m.reward_id)
    in_window = [values[r][0] for r in seen if values[r][1] <= end]
    if not in_window:
        expected = -1.0
    elif aggregation == "sum":
        expected = sum(in_window)
    else:
        expected = in_window[0]
    assert emitted[0].reward == pytest.approx(expected)
    assert emitted[0].probability == d.probability and emitted[0].chosen == d.chosen
    assert counts.get("late_rewards", 0) == len(seen) - len(in_window)
    ignored = max(0, len(in_window) - 1) if aggregation == "earliest" else 0
    assert counts.get("ignored_rewards", 0) == ignored
    assert counts.get("duplicate_rewards", 0) == sum(copies[1 : 1 + len(rewards)]) - len(rewards)
    assert counts.get("duplicate_decisions", 0) == copies[0] - 1


@settings(max_examples=300, deadline=None)
@given(
    aggregation=st.sampled_from(["earliest", "sum"]),
    rewards=rewards_strategy,
    ticks=st.lists(st.floats(min_value=DECIDED - 5, max_value=DECIDED + 3 * WAIT), max_size=6),
    data=st.data(),
)
def test_ticks_at_any_time_emit_once_and_never_before_the_window_closes(
    aggregation: str,
    rewards: list[tuple[str, float, float]],
    ticks: list[float],
    data: st.DataObject,
) -> None:
    messages: list[Message] = [decision(aggregation), *(reward(r, v, t) for r, v, t in rewards)]
    messages += [TickAt(t) for t in ticks]
    order = data.draw(st.permutations(messages))
    final = DECIDED + WAIT + CONFIG.retention_seconds + 1
    # rewards delivered after their entry expired wait as orphans until the orphan window ends
    flush = [
        TickAt(final),
        TickAt(final + CONFIG.retention_seconds),
        TickAt(final + CONFIG.orphan_seconds + 3 * WAIT),
    ]
    entry, emitted, _ = play([*order, *flush])
    assert len(emitted) == 1
    assert entry is None
    assert emitted[0].emitted_ts >= DECIDED + WAIT, "windows close no earlier than the deadline"


def test_reward_before_decision_is_held_then_learned_when_the_window_closes() -> None:
    entry, emitted, counts = play([reward("r1", 1.0, DECIDED + 1), reward("r2", 5.0, DECIDED + 2)])
    assert emitted == [] and entry is not None and counts == {"held_rewards": 2}
    out = join.on_decision(entry, decision("earliest"), CONFIG)
    assert out.emit is None and out.counts == {"decisions": 1, "ignored_rewards": 1}
    assert out.entry is not None
    closed = join.on_tick(out.entry, DECIDED + WAIT, CONFIG)
    assert closed.emit is not None and closed.emit.reward == 1.0 and closed.emit.reason == "reward"


def test_sum_waits_for_the_window_and_adds_rewards() -> None:
    entry, emitted, _ = play(
        [
            decision("sum"),
            reward("r1", 1.0, DECIDED + 1),
            reward("r2", 2.5, DECIDED + 2),
            TickAt(DECIDED + WAIT - 0.1),
        ]
    )
    assert emitted == [] and entry is not None
    out = join.on_tick(entry, DECIDED + WAIT, CONFIG)
    assert out.emit is not None and out.emit.reward == 3.5 and out.emit.rewards == 2
    assert out.emit.reason == "reward"


def test_decision_without_reward_learns_the_default_reward() -> None:
    _, emitted, counts = play([decision("earliest", default=-0.25), TickAt(DECIDED + WAIT)])
    assert [e.reward for e in emitted] == [-0.25]
    assert emitted[0].reason == "default" and counts["emitted_default"] == 1


def test_the_example_carries_the_context_and_action_features_decided_with() -> None:
    popular = {"b": {"popularity": {"views_1h": 4.0}}}
    logged = msgspec.structs.replace(decision(), action_features=popular)
    _, emitted, _ = play([logged, TickAt(DECIDED + WAIT)])
    assert emitted[0].context == logged.context
    assert emitted[0].action_features == popular
    again = decode(encode(emitted[0]))
    assert isinstance(again, TrainingExample) and again.action_features == popular


def test_rewards_whose_decision_never_arrives_are_dropped_after_the_orphan_window() -> None:
    entry, _, _ = play([reward("r1", 1.0, 5.0)])
    assert entry is not None
    assert join.on_tick(entry, 5.0 + CONFIG.orphan_seconds - 1, CONFIG).entry is entry
    out = join.on_tick(entry, 5.0 + CONFIG.orphan_seconds, CONFIG)
    assert out.entry is None and out.counts == {"orphaned_rewards": 1} and out.emit is None


def test_late_reward_after_window_is_counted_not_learned() -> None:
    _, emitted, counts = play(
        [decision("sum"), TickAt(DECIDED + WAIT), reward("late", 9.0, DECIDED + WAIT + 1)]
    )
    assert [e.reward for e in emitted] == [0.0]
    assert counts["late_rewards"] == 1


def test_reward_ids_are_bounded() -> None:
    config = join.JoinConfig(max_reward_ids=3)
    entry: join.JoinEntry | None = None
    for i in range(10):
        entry = join.on_reward(entry, reward(f"r{i}", 0.0, 1.0), config).entry
    assert entry is not None and entry.reward_ids == ["r7", "r8", "r9"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("orphan_seconds", 0.0), ("retention_seconds", -1.0), ("max_reward_ids", 0)],
)
def test_join_config_rejects_non_positive_values(field: str, value: float) -> None:
    from engine.errors import InvalidInput

    with pytest.raises(InvalidInput, match=field):
        join.JoinConfig(**{field: value})  # type: ignore[arg-type]


# --- deferred activation ---------------------------------------------------------------


def deferred(aggregation: str = "earliest", default: float = -1.0) -> DecisionLogged:
    return msgspec.structs.replace(decision(aggregation, default), deferred=True)


def activation(ts: float, eid: str = "e1") -> EventActivated:
    return EventActivated(event_id=eid, ts=ts)


@settings(max_examples=300, deadline=None)
@given(
    aggregation=st.sampled_from(["earliest", "sum"]),
    rewards=rewards_strategy,
    activations=st.lists(
        st.floats(min_value=DECIDED - 1, max_value=DECIDED + 2 * WAIT), max_size=3
    ),
    ticks=st.lists(st.floats(min_value=DECIDED - 5, max_value=DECIDED + 3 * WAIT), max_size=4),
    copies=st.integers(min_value=1, max_value=2),
    data=st.data(),
)
def test_a_deferred_decision_is_learned_once_if_activated_in_its_window_and_never_if_not(
    aggregation: str,
    rewards: list[tuple[str, float, float]],
    activations: list[float],
    ticks: list[float],
    copies: int,
    data: st.DataObject,
) -> None:
    """Any order of the decision, its rewards and activations (rewards and activations
    delivered again too) and ticks at any time: learned exactly once, with the value a
    decision that was never deferred would learn, if and only if an activation with a time
    inside the window arrived no later than the window's closing tick; else never, and
    counted."""
    d = deferred(aggregation)
    messages: list[Message] = [d]
    messages += [reward(r, v, t) for r, v, t in rewards] * copies
    messages += [activation(t) for t in activations] * copies
    messages += [TickAt(t) for t in ticks]
    order = data.draw(st.permutations(messages))
    end = DECIDED + WAIT
    final = [  # what came after its entry expired waits as an orphan, then goes
        TickAt(end + 1),
        TickAt(end + CONFIG.retention_seconds + 2),
        TickAt(end + CONFIG.orphan_seconds + 3 * WAIT),
    ]
    entry, emitted, counts = play([*order, *final])
    # the activations that count: inside the window, and delivered before the window closed
    # (the first tick at or after the deadline once the decision is there closes it)
    closed_at = None
    saw_decision = False
    for i, m in enumerate([*order, *final]):
        saw_decision = saw_decision or isinstance(m, DecisionLogged)
        if saw_decision and isinstance(m, TickAt) and m.ts >= end:
            closed_at = i
            break
    assert closed_at is not None
    counted = [
        m for m in [*order, *final][:closed_at] if isinstance(m, EventActivated) and m.ts <= end
    ]
    if counted:
        assert len(emitted) == 1, "an activated decision is learned exactly once"
        undeferred: list[Message] = [
            msgspec.structs.replace(m, deferred=False) if isinstance(m, DecisionLogged) else m
            for m in [*order, *final]
            if not isinstance(m, EventActivated)
        ]
        _, reference, _ = play(undeferred)
        assert emitted[0].reward == pytest.approx(reference[0].reward)
        assert "unactivated" not in counts
    else:
        assert emitted == [], "a deferred decision never activated is never learned"
        assert counts["unactivated"] == 1
    assert entry is None, "the entry is deleted after its retention either way"


def test_rewards_of_an_unactivated_decision_are_held_then_counted_never_learned() -> None:
    entry, emitted, counts = play([deferred("sum"), reward("r1", 1.0, DECIDED + 1)])
    assert entry is not None and len(entry.rewards) == 1 and counts["rewards"] == 1
    out = join.on_tick(entry, DECIDED + WAIT, CONFIG)
    assert out.emit is None and out.counts == {"unactivated": 1, "unactivated_rewards": 1}
    assert out.entry is not None and out.entry.inactive
    late = join.on_activation(out.entry, activation(DECIDED + WAIT + 1), CONFIG)
    assert late.emit is None and late.counts == {"late_activations": 1}
    assert late.entry is not None
    after = join.on_reward(late.entry, reward("r2", 1.0, DECIDED + 2), CONFIG)
    assert after.counts == {"late_rewards": 1}, "its window has closed"
    assert after.entry is not None
    gone = join.on_tick(after.entry, DECIDED + WAIT + CONFIG.retention_seconds, CONFIG)
    assert gone.entry is None and gone.counts == {"expired": 1} and emitted == []


def test_an_activation_before_its_decision_is_held_and_counts() -> None:
    entry, _, counts = play([activation(DECIDED + 1), reward("r1", 1.0, DECIDED + 2)])
    assert counts == {"held_activations": 1, "held_rewards": 1}
    assert entry is not None and entry.activated == DECIDED + 1
    entry, emitted, counts = play([activation(DECIDED + 1), deferred(), TickAt(DECIDED + WAIT)])
    assert [e.reward for e in emitted] == [-1.0]  # activated, no reward: the default
    assert counts["held_activations"] == 1 and counts["emitted_default"] == 1


def test_activating_twice_changes_nothing_and_an_orphan_activation_expires() -> None:
    _, emitted, counts = play(
        [
            deferred(),
            activation(DECIDED + 1),
            reward("r1", 0.5, DECIDED + 2),
            activation(DECIDED + 3),
            TickAt(DECIDED + WAIT),
        ]
    )
    assert [e.reward for e in emitted] == [0.5]
    assert counts["activations"] == 1 and counts["duplicate_activations"] == 1
    entry, _, _ = play([activation(5.0)])
    assert entry is not None
    out = join.on_tick(entry, 5.0 + CONFIG.orphan_seconds, CONFIG)
    assert out.entry is None and out.counts["orphaned_activations"] == 1


def test_an_activation_of_a_decision_not_deferred_changes_nothing() -> None:
    _, emitted, counts = play(
        [decision(default=-1.0), activation(DECIDED + 1), TickAt(DECIDED + WAIT)]
    )
    assert [e.reward for e in emitted] == [-1.0]
    assert counts["undeferred_activations"] == 1


def test_the_example_carries_the_inline_actions_and_old_records_still_decode() -> None:
    used = [
        ActionUsed("a", {"item": {"price": 1.0}}, {"sku": "A-1"}),
        ActionUsed("b", {"item": {"colour": "red"}}, {}),
    ]
    logged = msgspec.structs.replace(decision(), actions=used)
    _, emitted, _ = play([logged, TickAt(DECIDED + WAIT)])
    assert emitted[0].actions == used
    again = decode(encode(emitted[0]))
    assert isinstance(again, TrainingExample) and again.actions == used
    # a decision logged before actions and deferral were fields
    old = msgspec.json.decode(encode(decision()))
    del old["actions"], old["deferred"]
    read = decode(msgspec.json.encode(old))
    assert isinstance(read, DecisionLogged) and read.actions == [] and not read.deferred
    entry = msgspec.json.decode(join.encode_entry(join.JoinEntry(event_id="e", first_seen=1.0)))
    del entry["activated"], entry["inactive"]
    assert join.decode_entry(msgspec.json.encode(entry)).activated is None
