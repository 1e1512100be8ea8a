"""api.bodies.parse: every decoded body is bounded, JSON and YAML alike (issue 22, defect 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from api.app import create_app
from api.bodies import parse
from engine.catalog import parse_catalog
from engine.errors import EngineError, InvalidInput, LimitExceeded, MalformedBody
from engine.limits import DEFAULT_LIMITS, Limits
from streams.broker import free_port
from streams.settings import Settings, from_env

JSON = "application/json"
YAML = "application/yaml"
SMALL = Limits(max_body_depth=3, max_body_nodes=10)

# The 442-byte body of issue 22: eight levels of anchors, 9**8 (43 million) strings once
# expanded. It took 19 s and 1.3 GB to answer 201.
BOMB = b"""actions:
- id: a
  metadata:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def refused(raw: bytes, content_type: str, limits: Limits = DEFAULT_LIMITS) -> EngineError:
    with pytest.raises(EngineError) as raised:
        parse(raw, content_type, limits)
    return raised.value


def test_the_alias_bomb_is_refused_at_its_first_alias_before_anything_is_built() -> None:
    start = time.perf_counter()
    error = refused(BOMB, YAML)
    assert time.perf_counter() - start < 0.1
    assert isinstance(error, InvalidInput) and error.status == 422
    assert error.field == "actions[0].metadata.b[0]"
    assert "alias (*a)" in error.detail


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"a: &x 1\nb: *x\n", "b"),
        (b"a: &x {k: 1}\nb: [1, *x]\n", "b[1]"),
        (b"base: &b {k: 1}\nother:\n  <<: *b\n", "other.<<"),  # merge keys need aliases
        (b"&x a: 1\n*x : 2\n", "body"),  # an alias as a key
    ],
)
def test_every_yaml_alias_is_refused(raw: bytes, field: str) -> None:
    error = refused(raw, YAML)
    assert error.status == 422 and error.field == field and "alias" in error.detail


def test_an_anchor_without_an_alias_is_harmless() -> None:
    assert parse(b"a: &x 1\n", YAML, DEFAULT_LIMITS) == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"a": {"b": [1]}}', JSON),
        (b"a: {b: [1]}\n", YAML),
        (b"a:\n  b:\n  - 1\n", YAML),
    ],
)
def test_nesting_up_to_the_depth_is_accepted(raw: bytes, content_type: str) -> None:
    assert parse(raw, content_type, SMALL) == {"a": {"b": [1]}}


@pytest.mark.parametrize(
    ("raw", "content_type", "field"),
    [
        (b'{"a": {"b": [[1]]}}', JSON, "a.b[0]"),
        (b'{"a": [{}, {"b": {"c": 1}}]}', JSON, "a[1].b"),
        (b"a: {b: [[1]]}\n", YAML, "a.b[0]"),
        (b"a:\n- {}\n- b: {c: 1}\n", YAML, "a[1].b"),
        (b"[" * 10_000 + b"]" * 10_000, JSON, "body"),
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", JSON, "body"),
    ],
)
def test_deeper_nesting_is_refused_naming_where(raw: bytes, content_type: str, field: str) -> None:
    error = refused(raw, content_type, SMALL)
    assert isinstance(error, LimitExceeded) and error.field == field
    assert "max_body_depth of 3" in error.detail


def test_ten_thousand_yaml_brackets_are_refused_quickly() -> None:
    start = time.perf_counter()
    error = refused(b"[" * 10_000 + b"]" * 10_000, YAML)
    assert time.perf_counter() - start < 0.5
    assert error.status in (400, 422) and error.field == "body"  # libyaml stops at 1,000


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (json.dumps({"a": list(range(10))}).encode(), JSON),
        (json.dumps({f"k{i}": i for i in range(10)}).encode(), JSON),
        (yaml.safe_dump({"a": list(range(10))}).encode(), YAML),
        (yaml.safe_dump({f"k{i}": i for i in range(10)}).encode(), YAML),
    ],
)
def test_more_values_than_the_node_limit_are_refused(raw: bytes, content_type: str) -> None:
    error = refused(raw, content_type, SMALL)
    assert isinstance(error, LimitExceeded) and error.field == "body"
    assert "max_body_nodes of 10" in error.detail
    assert parse(raw, content_type, Limits(max_body_nodes=12))


@pytest.mark.parametrize(
    ("raw", "content_type", "field"),
    [
        (b'{"a": 1, "a": 2}', JSON, "a"),
        (b'{"a" : 1,\n "a"\t: 2}', JSON, "a"),
        (b'{"x": {"b": 1, "b": 1}}', JSON, "x.b"),
        (b'{"x": [{"b": 1}, {"c": "\\"", "c": 2}]}', JSON, "x[1].c"),
        (b'{"\\u0061": 1, "a": 2}', JSON, "a"),  # the same key, escaped
        (b'{"": 1, "": 2}', JSON, '""'),
        (b"a: 1\na: 2\n", YAML, "a"),
        (b"x:\n  b: 1\n  'b': 2\n", YAML, "x.b"),
        (b"x: [{c: 1, c: 1}]\n", YAML, "x[0].c"),
        (b"x: {yes: 1, on: 2}\n", YAML, "x.True"),  # both are YAML 1.1's true
    ],
)
def test_duplicate_keys_are_refused_naming_the_key(
    raw: bytes, content_type: str, field: str
) -> None:
    error = refused(raw, content_type)
    assert error.status == 422 and error.field == field and "twice" in error.detail


def test_a_json_duplicate_may_be_let_through_where_asked() -> None:
    assert parse(b'{"a": 1, "a": 2}', JSON, DEFAULT_LIMITS, unique_keys=False) == {"a": 2}


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "field", "says"),
    [
        (b'{"a": NaN}', JSON, 400, "body", "NaN and Infinity are not JSON"),
        (b'{"a": -Infinity}', JSON, 400, "body", "NaN and Infinity are not JSON"),
        (b'{"a": 1e400}', JSON, 400, "body", "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", JSON, 400, "body", "out of range"),
        (b'{"a": [1, 1e13]}', JSON, 422, "a[1]", "max_abs_number"),
        (b'{"a": {"b": -18446744073709551616}}', JSON, 422, "a.b", "integer of 20 digits"),
        (b"a: .nan\n", YAML, 422, "a", "finite"),
        (b"a: [-.inf]\n", YAML, 422, "a[0]", "finite"),
        (b"a: 1.0e+400\n", YAML, 422, "a", "finite"),
        (b"a: " + b"9" * 5000 + b"\n", YAML, 422, "a", "integer of 5000 characters"),
        (b"a: 1.0e+13\n", YAML, 422, "a", "max_abs_number"),
    ],
)
def test_numbers_are_finite_and_bounded(
    raw: bytes, content_type: str, status: int, field: str, says: str
) -> None:
    error = refused(raw, content_type)
    assert (error.status, error.field) == (status, field) and says in error.detail


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "field"),
    [
        (b'{"a": "\xff"}', JSON, 400, "body"),
        (b'{"a": "\xed\xa0\x80"}', JSON, 400, "body"),  # a surrogate, UTF-8 encoded
        (b'{"a": "\\ud800"}', JSON, 400, "body"),  # a lone surrogate escape
        (b"a: \xff\n", YAML, 400, "body"),
        (b'a: "\\ud800"\n', YAML, 400, "body"),
        (b'\xff\xfe{"a": 1}', JSON, 400, "body"),  # UTF-16 is not accepted
    ],
)
def test_text_must_be_utf8(raw: bytes, content_type: str, status: int, field: str) -> None:
    error = refused(raw, content_type)
    assert (error.status, error.field) == (status, field), error.detail


def test_yaml_dates_stay_strings_and_only_json_types_are_built() -> None:
    body = parse(b"start: 2026-01-01T00:00:00Z\nday: 2026-01-01\n", YAML, DEFAULT_LIMITS)
    assert body == {"start": "2026-01-01T00:00:00Z", "day": "2026-01-01"}
    for raw, field in [
        (b"a: !!binary aGVsbG8=\n", "a"),
        (b"a: [!!timestamp 2026-01-01]\n", "a[0]"),
        (b"a: !!set {x: null}\n", "a"),
    ]:
        error = refused(raw, YAML)
        assert (error.status, error.field) == (422, field) and "which JSON has not" in error.detail


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"", JSON, 400),
        (b"  ", JSON, 400),
        (b"{not json", JSON, 400),
        (b"[1, 2]", JSON, 422),
        (b'"text"', JSON, 422),
        (b"", YAML, 422),
        (b"- 1\n", YAML, 422),
        (b"a: 1\n---\nb: 2\n", YAML, 400),
        (b"a: !!python/name:os.system\n", YAML, 400),
        (b"? [a, b]\n: 1\n", YAML, 422),
        (b"a: [1\n", YAML, 400),
    ],
)
def test_what_is_no_object_is_refused(raw: bytes, content_type: str, status: int) -> None:
    error = refused(raw, content_type)
    assert error.status == status and error.field == "body", error.detail


def test_a_malformed_body_is_a_malformed_body() -> None:
    assert isinstance(refused(b"{not json", JSON), MalformedBody)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(-1e12, 1e12, allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=5))
def test_bounded_bodies_decode_as_written_in_json_and_yaml(body: dict[str, object]) -> None:
    assert parse(json.dumps(body).encode(), JSON, DEFAULT_LIMITS) == body
    assert parse(yaml.safe_dump(body).encode(), YAML, DEFAULT_LIMITS) == body


def catalog(metadata: list[dict[str, object]]) -> dict[str, object]:
    return {"actions": [{"id": f"a{i}", "metadata": m} for i, m in enumerate(metadata)]}


def test_metadata_is_bounded_per_action_and_per_catalog() -> None:
    limits = Limits(max_metadata_bytes=40, max_catalog_metadata_bytes=60)
    fits = {"title": "x" * 20}  # 32 bytes as JSON
    parse_catalog("c", catalog([fits]), limits, version=1, now=0.0)
    with pytest.raises(LimitExceeded) as one:
        parse_catalog("c", catalog([{"title": "x" * 40}]), limits, version=1, now=0.0)
    assert one.value.field == "actions[0].metadata"
    assert "max_metadata_bytes of 40" in one.value.detail
    with pytest.raises(LimitExceeded) as total:
        parse_catalog("c", catalog([fits, {}, fits]), limits, version=1, now=0.0)
    assert total.value.field == "actions[2].metadata"
    assert "max_catalog_metadata_bytes of 60" in total.value.detail


def test_body_limits_are_configured_from_the_environment() -> None:
    limits = from_env(
        {
            "LOOPWISE_LIMIT_MAX_BODY_DEPTH": "8",
            "LOOPWISE_LIMIT_MAX_BODY_NODES": "500",
            "LOOPWISE_LIMIT_MAX_METADATA_BYTES": "100",
            "LOOPWISE_LIMIT_MAX_CATALOG_METADATA_BYTES": "1000",
        }
    ).limits
    assert (limits.max_body_depth, limits.max_body_nodes) == (8, 500)
    assert (limits.max_metadata_bytes, limits.max_catalog_metadata_bytes) == (100, 1000)
    with pytest.raises(InvalidInput):
        Limits(max_body_nodes=0)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/decide", {"catalog": "c", "context": {"a": {"b": [1]}}}, "context.a.b"),
        ("/v1/rewards", {"rewards": [{"event_id": "e", "value": [[1]]}]}, "rewards[0].value"),
        ("/v1/events", {"events": [{"type": "x", "product": {"id": {}}}]}, "events[0].product"),
    ],
)
def test_every_route_decodes_within_the_configured_limits(
    tmp_path: Path, path: str, body: dict[str, object], field: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, broker=f"127.0.0.1:{free_port()}", limits=Limits(max_body_depth=3)
    )
    with TestClient(create_app(settings)) as client:
        r = client.post(path, json=body)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert "max_body_depth of 3" in r.json()["detail"]
