"""Checkpoints: any truncation or alteration is detected; the ledger is bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import checkpoint
from engine.errors import CorruptCheckpoint
from engine.ledger import Ledger, digest

HEADER = {"epoch": "e", "offsets": {"0": 12}, "ledger": ["a", "b"]}
BLOBS = {"shop": b"\x00model-bytes\xff" * 50, "other": b""}


def test_round_trip() -> None:
    header, blobs = checkpoint.decode(checkpoint.encode(HEADER, BLOBS))
    assert header == HEADER and blobs == BLOBS


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_truncation_or_bit_flip_is_refused(data: st.DataObject) -> None:
    raw = bytearray(checkpoint.encode(HEADER, BLOBS))
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        damaged = bytes(raw[:cut])
    else:
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        damaged = bytes(raw)
    with pytest.raises(CorruptCheckpoint):
        checkpoint.decode(damaged)


def test_appended_bytes_are_refused() -> None:
    with pytest.raises(CorruptCheckpoint):
        checkpoint.decode(checkpoint.encode(HEADER, BLOBS) + b"x")


def test_ledger_refuses_repeats_and_forgets_the_oldest() -> None:
    ledger = Ledger(capacity=3)
    assert [ledger.add(k) for k in "abca"] == [True, True, True, False]
    assert ledger.add("d") and "a" not in ledger and len(ledger) == 3
    assert ledger.keys() == [digest(k) for k in "bcd"] and all(k in ledger for k in "bcd")
    assert Ledger(3, ["x", "x", "y"]).keys() == [digest("x"), digest("y")]


@settings(max_examples=300, deadline=None)
@given(
    adds=st.lists(
        st.sampled_from([f"e{i}" for i in range(40)]) | st.text(max_size=5), max_size=400
    ),
    capacity=st.integers(1, 30),
)
def test_the_ledger_is_the_newest_capacity_distinct_keys(adds: list[str], capacity: int) -> None:
    """Against the obvious model: an insertion-ordered dict of the newest distinct keys.
    Small capacities make the hash table's clusters wrap and shift on every forget."""
    ledger = Ledger(capacity)
    model: dict[str, None] = {}
    for key in adds:
        assert ledger.add(key) == (key not in model)
        model.setdefault(key, None)
        if len(model) > capacity:
            del model[next(iter(model))]
        assert len(ledger) == len(model)
    assert ledger.keys() == [digest(k) for k in model]
    assert all(k in ledger for k in model)
    assert not any(k in ledger for k in set(adds) - set(model))


@settings(max_examples=200, deadline=None)
@given(
    adds=st.lists(st.text(max_size=6), max_size=120),
    capacity=st.integers(1, 30),
)
def test_the_encoded_ledger_restores_the_same_keys(adds: list[str], capacity: int) -> None:
    ledger = Ledger(capacity)
    for key in adds:
        ledger.add(key)
    again = Ledger(capacity, Ledger.decode(ledger.encoded()))
    assert again.keys() == ledger.keys() and len(again) == len(ledger)
    assert all(k in again for k in adds[-capacity:] if k in ledger)


def test_a_ledger_blob_from_before_digests_still_loads() -> None:
    old = b'["a", "b"]\n["c"]'  # lines of JSON arrays of keys
    again = Ledger(2, Ledger.decode(old))
    assert "b" in again and "c" in again and "a" not in again


def test_an_unreadable_ledger_blob_is_a_corrupt_checkpoint() -> None:
    with pytest.raises(CorruptCheckpoint):
        Ledger.decode(b'["a", 1]')
    with pytest.raises(CorruptCheckpoint):
        Ledger.decode(Ledger(4, ["a"]).encoded()[:-3])
