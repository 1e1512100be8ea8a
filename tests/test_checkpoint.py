"""Checkpoints: any truncation or alteration is detected; the ledger is bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import checkpoint
from engine.errors import CorruptCheckpoint
from engine.ledger import Ledger

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
    assert ledger.add("d") and "a" not in ledger and ledger.keys() == ["b", "c", "d"]
    assert Ledger(3, ["x", "x", "y"]).keys() == ["x", "y"]


@settings(max_examples=300, deadline=None)
@given(
    adds=st.lists(
        st.sampled_from([f"e{i}" for i in range(40)]) | st.text(max_size=5), max_size=120
    ),
    capacity=st.integers(1, 30),
    chunk=st.integers(1, 8),
)
def test_the_encoded_ledger_restores_the_same_keys_and_stays_bounded(
    adds: list[str], capacity: int, chunk: int
) -> None:
    ledger = Ledger(capacity, chunk=chunk)
    for key in adds:
        ledger.add(key)
    raw = ledger.encoded()
    kept = Ledger.decode(raw)
    assert Ledger(capacity, kept).keys() == ledger.keys()
    assert set(ledger.keys()) <= set(kept)
    assert len(kept) <= capacity + chunk  # forgotten chunks are dropped, not kept forever


def test_an_unreadable_ledger_blob_is_a_corrupt_checkpoint() -> None:
    with pytest.raises(CorruptCheckpoint):
        Ledger.decode(b'["a", 1]')
