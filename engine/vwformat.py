"""VW text examples for `--cb_explore_adf`, built so that no user byte changes their structure.

A multiline example is a `shared` line followed by one line per action; only the chosen
action carries a label `0:<cost>:<probability>`. Every user string (namespace, feature
name, categorical value) goes through `escape`, which keeps `[A-Za-z0-9_.+-]` and
percent-encodes every other UTF-8 byte, so no `|`, `:`, whitespace, line break or NUL
survives. Namespaces get a fixed one-letter prefix (`c` context, `a` action, `p` slot);
VW indexes a namespace by its first letter, so interactions such as `-q ca` are ours.

Numbers are written so that VW 9.11 reads back exactly `float32(value)`: integers up to
2**24 in decimal (VW's fast parser is exact there), everything else as a C99 hex float,
which VW hands to `strtod`. Plain `repr` is not exact in VW's fast parser: `1e-07` reads
as 9.9999987e-08 and `1.2345678901234567e-30` as 0, which would drop the feature.
VW itself drops zero-valued features; it stores 32-bit floats, so larger values are refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from engine.errors import InvalidInput
from engine.features import Features, Namespace

CONTEXT_PREFIX = "c"
ACTION_PREFIX = "a"
SLOT_PREFIX = "p"
ID_PREFIX = "i"  # the action's id, alone in its namespace: `ci` crosses it with the context
SHARED = "shared"

SAFE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-"
# `escape("")`: every other output has `%` only before two hex digits, so this is distinct.
EMPTY_TOKEN = "%"
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_MIN_POSITIVE = 2.0**-149  # smaller probabilities become 0 in VW
EXACT_INTEGER = 2**24  # VW's fast decimal parser is exact for integers up to here

_SAFE_RE = re.compile(r"[A-Za-z0-9_.+\-]+")
_PREFIX_RE = re.compile(r"[A-Za-z]")
_LABEL_RE = re.compile(r"0:[0-9A-Fa-fx.p+\-]+:[0-9A-Fa-fx.p+\-]+")
_BREAKS_RE = re.compile(r"[\n\r\x00]")
_BYTE_TOKENS = tuple(chr(b) if chr(b) in SAFE_CHARS else f"%{b:02X}" for b in range(256))
_CACHED_CHARS = 32  # only short strings are cached: at most ~25 MB, even under attack


def escape(text: str) -> str:
    """A VW-safe token for `text`; injective, and the identity on `[A-Za-z0-9_.+-]+`."""
    if len(text) <= _CACHED_CHARS:
        return _escape_cached(text)
    return _escape(text)


@functools.lru_cache(maxsize=32768)
def _escape_cached(text: str) -> str:
    return _escape(text)


def _escape(text: str) -> str:
    if _SAFE_RE.fullmatch(text):
        return text
    return _percent_encode(text)


def _percent_encode(text: str) -> str:
    if not text:
        return EMPTY_TOKEN
    data = text.encode("utf-8", "surrogatepass")
    return "".join([_BYTE_TOKENS[b] for b in data])


def format_number(value: float, field: str = "value") -> str:
    """VW text for `value` that VW reads back as exactly `float32(value)`."""
    text = _number_text(value)
    if text is None:
        raise _not_float32(value, field)
    return text


def _number_text(value: float) -> str | None:
    number = float(value)
    if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
        return None
    if number.is_integer() and abs(number) <= EXACT_INTEGER:
        return str(int(number))
    return number.hex()


def _not_float32(value: float, field: str) -> InvalidInput:
    return InvalidInput(
        f"{field} must be a finite number within +/-{FLOAT32_MAX:.7g} "
        f"(VW stores 32-bit floats), got {value!r}",
        field=field,
    )


def namespace_block(prefix: str, features: Features) -> str:
    """`|<prefix><ns> tok tok |<prefix><ns2> ...`, sorted; empty namespaces are omitted."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidInput(f"namespace prefix must be one ASCII letter, got {prefix!r}")
    blocks = [_namespace(prefix, ns, features[ns]) for ns in sorted(features) if features[ns]]
    return " ".join(blocks)


def _namespace(prefix: str, ns: str, values: Namespace) -> str:
    tokens: list[str] = []
    add = tokens.append
    for name in sorted(values):  # the hot loop of every example: kept flat
        value = values[name]
        if isinstance(value, str):
            add(_categorical(name, value))
            continue
        text = _number_text(value)
        if text is None:
            raise _not_float32(value, f"{ns}.{name}")
        add(f"{escape(name)}:{text}")
    return f"|{prefix}{escape(ns)} {' '.join(tokens)}"


def _categorical(name: str, value: str) -> str:
    if len(name) + len(value) <= _CACHED_CHARS:
        return _categorical_cached(name, value)
    return f"{escape(name)}={escape(value)}"


@functools.lru_cache(maxsize=32768)
def _categorical_cached(name: str, value: str) -> str:
    return f"{escape(name)}={escape(value)}"


def shared_line(features: Features) -> str:
    """The shared (context) line; `shared |c` when there are no features at all."""
    return f"{SHARED} {namespace_block(CONTEXT_PREFIX, features) or '|' + CONTEXT_PREFIX}"


def action_body(features: Features, action_id: str | None = None) -> str:
    """An unlabeled action line: `|i id=<id>`, then the feature namespaces; else `|a`.

    The id has a namespace of its own, `|i`, so `interactions` decide what it is crossed
    with: the default `ci` gives every action its own weight per context feature, as a
    disjoint model would, and actions that share every feature (or have none) can still
    be told apart; without `ci` the id is one per-action weight.
    """
    block = namespace_block(ACTION_PREFIX, features)
    if action_id is None:
        return block or f"|{ACTION_PREFIX}"
    # `id=` keeps an all-digit id from being read as a weight index ("1" and "01" alike)
    head = f"|{ID_PREFIX} id={escape(action_id)}"
    return f"{head} {block}" if block else head


def cb_label(cost: float, probability: float) -> str:
    """`0:<cost>:<probability>`, the label of the chosen action of an ADF example."""
    if not FLOAT32_MIN_POSITIVE <= probability <= 1.0:
        raise InvalidInput(
            f"probability must be in (0, 1] and at least {FLOAT32_MIN_POSITIVE:.3g} "
            f"(VW stores 32-bit floats), got {probability!r}",
            field="probability",
        )
    return f"0:{format_number(cost, 'cost')}:{format_number(probability, 'probability')}"


def labeled(body: str, label: str | None) -> str:
    """`label body`, or `body` alone when `label` is None."""
    if not body.startswith("|") or _BREAKS_RE.search(body):
        raise InvalidInput(f"action body must be one line starting with '|', got {body[:80]!r}")
    if label is None:
        return body
    if not _LABEL_RE.fullmatch(label):
        raise InvalidInput(f"label must come from cb_label, got {label[:80]!r}", field="label")
    return f"{label} {body}"


def multiline(
    shared: Features,
    actions: Sequence[Features],
    chosen: int | None = None,
    cost: float = 0.0,
    probability: float = 1.0,
) -> list[str]:
    """`[shared line, action lines...]`; only `actions[chosen]` carries the label."""
    if not actions:
        raise InvalidInput("an example needs at least one action", field="actions")
    if chosen is not None and not 0 <= chosen < len(actions):
        raise InvalidInput(
            f"chosen must index one of the {len(actions)} actions, got {chosen!r}",
            field="chosen",
        )
    label = None if chosen is None else cb_label(cost, probability)
    lines = [shared_line(shared)]
    for i, features in enumerate(actions):
        lines.append(labeled(action_body(features), label if i == chosen else None))
    return lines
