"""Bounded request bodies: refused by Content-Length before reading, or while streaming,
then decoded so that no body can grow after decoding.

`parse` turns the bytes of a JSON or YAML body into a dict and bounds what it decoded,
whatever the route (`api.bounds`: nesting depth, values, finite numbers within
+/-`max_abs_number`, only JSON types); YAML is decoded by `api.yamlbody`, which refuses
aliases and duplicate keys while composing. `bounded` bounds a batch's length.

Duplicate keys are refused in JSON too: a body that says two things is ambiguous, and
anything in front of the API may read the first where msgspec keeps the last. msgspec
cannot see them, so the standard library's scanner counts an object's keys a second time;
`unique_keys=False` skips that count.
"""

from __future__ import annotations

import json
from typing import NoReturn, TypeVar

import msgspec
from starlette.requests import Request

from api.bounds import check, children, join
from api.yamlbody import parse_yaml
from engine.errors import InvalidInput, LimitExceeded, MalformedBody, PayloadTooLarge
from engine.limits import Limits

T = TypeVar("T")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
_decoder = msgspec.json.Decoder()


async def read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedBody("Content-Length is not a number", field="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(
                f"body is {declared} bytes, more than the limit of {limit} bytes", field="body"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


async def json_object(
    request: Request, limits: Limits, *, unique_keys: bool = True
) -> dict[str, object]:
    """The body as a dict, at most `limits.max_body_bytes`, decoded within `limits`."""
    raw = await read(request, limits.max_body_bytes)
    return parse(raw, content_type(request), limits, unique_keys=unique_keys)


def parse(
    raw: bytes, content_type: str, limits: Limits, *, unique_keys: bool = True
) -> dict[str, object]:
    """A JSON (or, by content type, YAML) object from `raw`, bounded by `limits` (its size
    is bounded by `read`, before it is buffered)."""
    if content_type in YAML_TYPES:
        value = parse_yaml(raw, limits)
        check(value, limits)
    else:
        value = _json(raw, limits)
        keys = check(value, limits)
        if unique_keys and isinstance(value, dict) and _json_keys(raw) != keys:
            _duplicate_json_key(raw)
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    return value


def _json(raw: bytes, limits: Limits) -> object:
    if not raw.strip():
        raise MalformedBody("body is empty; a JSON object was expected", field="body")
    try:
        return _decoder.decode(raw)
    except RecursionError:  # msgspec's own guard, far beyond any max_body_depth
        raise LimitExceeded(
            f"body is nested deeper than the limit max_body_depth of {limits.max_body_depth} "
            "levels",
            field="body",
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"body is not valid JSON: {_reason(exc)}", field="body") from None


def _reason(exc: msgspec.DecodeError) -> str:
    text = str(exc).split(" - at `", 1)[0]
    if text == "Input data was truncated":  # also what msgspec says of a lone surrogate
        return "it is truncated, or a string holds a lone UTF-16 surrogate escape"
    if "out of range" in text:
        return f"{text.lower()} (numbers must be finite and within +/-1.8e308)"
    if "invalid character" in text:
        return f"{text} (NaN and Infinity are not JSON)"
    return text


def _json_keys(raw: bytes) -> int:
    """How many keys the objects of a valid JSON text spell, duplicates included."""
    objects: list[list[tuple[str, object]]] = []
    # C callables as hooks: the scanner builds no dict and converts no number
    scanner = json.JSONDecoder(object_pairs_hook=objects.append, parse_float=len, parse_int=len)
    try:
        scanner.decode(raw.decode())
    except ValueError as exc:  # not seen: msgspec is the stricter of the two
        raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None
    return sum(map(len, objects))


class _Twice(dict[str, object]):
    """A decoded JSON object that spelled `key` more than once."""

    key = ""


def _twice(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            twice = _Twice(pairs)
            twice.key = key
            return twice
        out[key] = value
    return out


def _duplicate_json_key(raw: bytes) -> NoReturn:
    where = _find_twice(json.loads(raw.decode(), object_pairs_hook=_twice), "") or "body"
    raise InvalidInput(f"{where} appears twice in one object; give each key once", field=where)


def _find_twice(value: object, path: str) -> str:
    if isinstance(value, _Twice):
        return join(path, value.key)
    if isinstance(value, dict | list):
        for inner, item in children(value, path):
            found = _find_twice(item, inner)
            if found:
                return found
    return ""


def bounded(items: list[T], name: str, limit: int) -> list[T]:
    """`items`, refused when empty or longer than `limit`; errors name `name`."""
    if not items:
        raise InvalidInput(f"{name} must be a non-empty array", field=name)
    if len(items) > limit:
        raise LimitExceeded(
            f"{name} has {len(items)} entries, more than the limit of {limit}", field=name
        )
    return items
