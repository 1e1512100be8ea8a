"""YAML request bodies, decoded so that they cannot grow: `parse_yaml` composes with
`BodyLoader`, which refuses aliases (how a few hundred bytes become megabytes), duplicate
and non-scalar keys, and bounds nesting and values before any object is constructed.
YAML's implicit timestamps stay strings (JSON has no date)."""

from __future__ import annotations

from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner

from api.bounds import children
from engine.errors import InvalidInput, LimitExceeded, MalformedBody
from engine.limits import Limits


def parse_yaml(raw: bytes, limits: Limits) -> object:
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
        for inner, item in children(value, path):
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
