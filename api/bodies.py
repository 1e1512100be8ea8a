"""Bounded request bodies: refused by Content-Length before reading, or while streaming."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import yaml
from starlette.requests import Request

from engine.errors import InvalidInput, LimitExceeded, MalformedBody, PayloadTooLarge

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


async def json_object(request: Request, limit: int) -> dict[str, object]:
    raw = await read(request, limit)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        value = _yaml(raw)
    else:
        if not raw:
            raise MalformedBody("body is empty; a JSON object was expected", field="body")
        try:
            value = _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(value, Mapping):
        raise InvalidInput("body must be a JSON object", field="body")
    return dict(value)


def batch(body: dict[str, object], name: str, limit: int) -> list[object]:
    """body[name] as a non-empty list of at most `limit` items."""
    items = body[name]
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{name} must be a non-empty array", field=name)
    if len(items) > limit:
        raise LimitExceeded(
            f"{name} has {len(items)} entries, more than the limit of {limit}", field=name
        )
    return items


def _yaml(raw: bytes) -> object:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise MalformedBody(f"body is not valid YAML: {exc}", field="body") from exc


def field(
    body: Mapping[str, object],
    name: str,
    kind: type,
    *,
    required: bool = True,
    default: object = None,
) -> object:
    """body[name], checked to be of `kind`; errors name the field."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return default
    value = body[name]
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidInput(f"{name} must be of type {_kind_name(kind)}", field=name)
    return value


def _kind_name(kind: type) -> str:
    return {
        str: "string",
        float: "number",
        dict: "object",
        list: "array",
        bool: "boolean",
        int: "integer",
    }.get(kind, kind.__name__)
