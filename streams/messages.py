"""Reading a message off a topic in an agent: a poisoned one is counted, logged and
skipped, never retried and never fatal."""

from __future__ import annotations

import logging
from collections import Counter

from engine.errors import EngineError
from engine.records import Message, decode

log = logging.getLogger(__name__)


def read(raw: bytes, counts: Counter[str], where: str) -> Message | None:
    """The message in `raw`, or None (counted as poisoned) when it cannot be decoded."""
    try:
        return decode(raw)
    except EngineError as exc:
        counts["poisoned"] += 1
        log.warning("skipped a poisoned message %s: %s", where, exc)
        return None
