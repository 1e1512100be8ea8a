"""Bounded request bodies: refused by Content-Length before reading, or while streaming,
then decoded so that no body can grow after decoding.

`parse` turns the bytes of a JSON or YAML body into a dict and bounds what it decoded,
whatever the route: nesting depth (`Limits.max_body_depth`), values (`max_body_nodes`),
every number finite and within +/-`max_abs_number`, only JSON types, and no key twice in
one object. YAML aliases are refused where they occur, before anything is constructed (an
alias is how 442 bytes become 60 MB), and YAML's implicit timestamps stay strings.

Duplicate keys are refused in JSON too: a body that says two things is ambiguous, and
anything in front of the API may read the first where msgspec keeps the last. msgspec
cannot see them, so the standard library's scanner counts an object's keys a second time
(about 4 us for a 170-byte body, 110 us for 12 KB of numbers, 19 ms for a 10,000-action
catalog on the 2-core machine); `unique_keys=False` skips that count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn, TypeVar

import msgspec
import yaml
import yaml.composer
import yaml.constructor
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner
from starlette.requests import Request

from engine.errors import InvalidInput, LimitExceeded, MalformedBody, PayloadTooLarge
from engine.limits import Limits

T = TypeVar("T")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
_decoder = msgspec.json.Decoder()
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


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
        value = _yaml(raw, limits)
        check(value, limits)
    else:
        value = _json(raw, limits)
        keys = check(value, limits)
        if unique_keys and isinstance(value, dict) and _json_keys(raw) != keys:
            _duplicate_json_key(raw)
    if not isinstance(value, dict):
        raise InvalidInput("body must be a JSON object", field="body")
    return value


def check(value: object, limits: Limits) -> int:
    """Bound a decoded value; the number of keys of all its objects. Errors name the path."""
    most, deepest = limits.max_abs_number, limits.max_body_depth
    nodes, keys = 1, 0
    stack: list[tuple[dict[str, object] | list[object], int]] = []
    if type(value) is dict or type(value) is list:
        stack.append((value, 1))
    elif type(value) not in _JSON_TYPES:
        _refuse(value, limits)
    while stack:
        container, depth = stack.pop()
        nodes += len(container)
        items: Iterable[Any] = container
        if type(container) is dict:
            keys += len(container)
            items = container.values()
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                if depth >= deepest:
                    _refuse(value, limits)
                stack.append((item, depth + 1))
            elif (kind is float or kind is int) and not -most <= item <= most:
                _refuse(value, limits)  # NaN fails the comparison too
            elif kind not in _JSON_TYPES:
                _refuse(value, limits)
    if nodes > limits.max_body_nodes:
        raise LimitExceeded(
            f"body has {nodes} values, more than the limit max_body_nodes of "
            f"{limits.max_body_nodes}",
            field="body",
        )
    return keys


def _refuse(value: object, limits: Limits) -> NoReturn:
    """Raise the error `check` found, naming the path of the first value that breaks a
    bound: a second, slower walk, taken only on the way to an error."""
    _explain(value, limits, "", 1)
    raise InvalidInput("body breaks a bound of its limits", field="body")  # pragma: no cover


def _explain(value: object, limits: Limits, path: str, depth: int) -> None:
    where = path or "body"
    if isinstance(value, dict | list):
        if depth > limits.max_body_depth:
            raise LimitExceeded(
                f"{where} is nested deeper than the limit max_body_depth of "
                f"{limits.max_body_depth} levels",
                field=where,
            )
        for inner, item in _children(value, path):
            _explain(item, limits, inner, depth + 1)
    elif isinstance(value, float):
        _float(value, limits, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -limits.max_abs_number <= value <= limits.max_abs_number:
            raise LimitExceeded(
                f"{where} is an integer of {_digits(value)} digits, beyond the limit "
                f"max_abs_number of +/-{limits.max_abs_number:g}",
                field=where,
            )
    elif not isinstance(value, str | bool) and value is not None:
        raise InvalidInput(
            f"{where} is of type {type(value).__name__}, which JSON has not (quote a date "
            "or a tagged value to send a string)",
            field=where,
        )


def _float(value: float, limits: Limits, where: str) -> None:
    if not math.isfinite(value):
        raise InvalidInput(f"{where} must be a finite number, got {value!r}", field=where)
    if abs(value) > limits.max_abs_number:
        raise LimitExceeded(
            f"{where} is {value:g}, beyond the limit max_abs_number of "
            f"+/-{limits.max_abs_number:g}",
            field=where,
        )


def _digits(value: int) -> int:
    return int(abs(value).bit_length() * math.log10(2)) + 1


def _children(value: dict[str, object] | list[object], path: str) -> Iterator[tuple[str, object]]:
    """(path, value) of each item of a container below `path`."""
    if isinstance(value, list):
        return ((f"{path}[{i}]", item) for i, item in enumerate(value))
    return ((_join(path, str(key)), item) for key, item in value.items())


def _join(path: str, key: str) -> str:
    name = key or '""'  # an empty key is named by its quotes
    return f"{path}.{name}" if path else name


# JSON


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
        return _join(path, value.key)
    if isinstance(value, dict | list):
        for inner, item in _children(value, path):
            found = _find_twice(item, inner)
            if found:
                return found
    return ""


# YAML


def _yaml(raw: bytes, limits: Limits) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8: {exc}", field="body") from None
    loader = BodyLoader(text, limits)
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise MalformedBody(f"body is not valid YAML: {exc}", field="body") from None
    finally:
        loader.dispose()
    if "\\u" in text or "\\U" in text:  # an escape may spell a lone surrogate
        _no_surrogates(value, "")
    return value


def _no_surrogates(value: object, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            where = path or "body"
            raise InvalidInput(f"{where} holds a lone UTF-16 surrogate", field=where) from None
    elif isinstance(value, dict | list):
        for inner, item in _children(value, path):
            _no_surrogates(inner, path)  # a key may hold one too
            _no_surrogates(item, inner)


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1's implicit types but timestamps: a date stays the string it was written as
    (JSON has no date; a catalog reads ISO-8601 strings)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }


try:  # libyaml scans and parses (3x faster); composing stays here, where it is bounded
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml

    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]  # the same role
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


MERGE = "tag:yaml.org,2002:merge"
INT = "tag:yaml.org,2002:int"


class BodyLoader(yaml.composer.Composer, _Parser, yaml.constructor.SafeConstructor, _Resolver):
    """A safe YAML loader for bodies: refuses aliases, duplicate and non-scalar keys, and
    bounds nesting and values while composing, before any object is constructed."""

    def __init__(self, stream: str, limits: Limits) -> None:
        _Parser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self.limits = limits
        self.nodes = 0
        self.depth = 0
        self.path: list[str] = []
        self.keys: dict[int, set[str]] = {}  # id(mapping node) -> its keys so far

    def where(self) -> str:
        return "".join(self.path) or "body"

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node: `index` is its position in a sequence, the key node of its
        value in a mapping, or None for a key."""
        self.path.append(self._segment(parent, index))
        try:
            self._admit(parent, index)
            nested = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
            self.depth += nested
            node = super().compose_node(parent, index)
            self.depth -= nested
            if isinstance(node, yaml.ScalarNode) and node.tag == INT and len(node.value) > 32:
                raise LimitExceeded(  # Python's int() refuses 5,000 digits anyway
                    f"{self.where()} is an integer of {len(node.value)} characters, beyond "
                    f"the limit max_abs_number of +/-{self.limits.max_abs_number:g}",
                    field=self.where(),
                )
            return node
        finally:
            self.path.pop()

    def _admit(self, parent: yaml.Node | None, index: Any) -> None:
        where = self.where()
        if self.check_event(yaml.AliasEvent):
            anchor = getattr(self.peek_event(), "anchor", "")
            raise InvalidInput(
                f"{where} is a YAML alias (*{anchor}); aliases are not accepted in request "
                "bodies: write the value out",
                field=where,
            )
        if isinstance(index, yaml.Node):  # a value: its key is composed
            seen = self.keys.setdefault(id(parent), set())
            key = self._key(index)
            if key in seen:
                raise InvalidInput(
                    f"{where} appears twice in one mapping; give each key once", field=where
                )
            seen.add(key)
        self.nodes += parent is None or index is not None  # values, as JSON counts them
        if self.nodes > self.limits.max_body_nodes:
            raise LimitExceeded(
                f"body has more values than the limit max_body_nodes of "
                f"{self.limits.max_body_nodes}",
                field="body",
            )
        nested = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if nested and self.depth >= self.limits.max_body_depth:
            raise LimitExceeded(
                f"{where} is nested deeper than the limit max_body_depth of "
                f"{self.limits.max_body_depth} levels",
                field=where,
            )

    def _segment(self, parent: yaml.Node | None, index: Any) -> str:
        if isinstance(index, int):
            return f"[{index}]"
        if not isinstance(index, yaml.Node):  # the root, or a key: named by its mapping
            return ""
        if not isinstance(index, yaml.ScalarNode):
            raise InvalidInput(
                f"{self.where()} has a key that is a {type(index).__name__}; keys must be strings",
                field=self.where(),
            )
        name = self._key(index) or '""'  # an empty key is named by its quotes
        return f".{name}" if any(self.path) else name

    def _key(self, key: yaml.Node) -> str:
        """A key as a string, as the dict built from it holds it (YAML 1.1's `on` and
        `yes` are both True: the same key)."""
        return "<<" if key.tag == MERGE else str(self.construct_object(key))


def batch(body: dict[str, object], name: str, limit: int) -> list[object]:
    """body[name] as a non-empty list of at most `limit` items."""
    items = body[name]
    if not isinstance(items, list):
        raise InvalidInput(f"{name} must be a non-empty array", field=name)
    return bounded(items, name, limit)


def bounded(items: list[T], name: str, limit: int) -> list[T]:
    """`items`, refused when empty or longer than `limit`; errors name `name`."""
    if not items:
        raise InvalidInput(f"{name} must be a non-empty array", field=name)
    if len(items) > limit:
        raise LimitExceeded(
            f"{name} has {len(items)} entries, more than the limit of {limit}", field=name
        )
    return items


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
