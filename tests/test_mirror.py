"""The table mirror's byte count follows what it holds, whatever the changelog brings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.serving.mirror import Mirror

KEYS = st.sampled_from([b"u1", b"u2", b"u3"])
CHANGES = st.lists(
    st.tuples(st.sampled_from(["put", "tombstone", "discard"]), KEYS, st.binary(max_size=40)),
    max_size=60,
)


@given(CHANGES)
def test_bytes_equal_the_sum_of_the_values_held(changes: list[tuple[str, bytes, bytes]]) -> None:
    mirror = Mirror("profiles", 1)
    for offset, (kind, key, value) in enumerate(changes):
        if kind == "discard":
            mirror.discard(key)
        else:
            mirror.apply(0, offset, key, value if kind == "put" else None)
        held = sum(len(v) for v in mirror.data.values() if isinstance(v, bytes))
        assert mirror.bytes == held
