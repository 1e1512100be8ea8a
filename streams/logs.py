"""Structured logs: one JSON object per line, the one adapter for python-json-logger.

Every line has `ts` (ISO 8601, UTC), `level`, `logger`, `process` (api, worker, up, ...)
and `message`; what a call passes in `extra` (by convention `event_id` and `catalog`
where there is one) becomes a field of its own, so a log pipeline can filter on it.
`LOOPWISE_LOG_FORMAT=text` gives the classic one-line text for a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("json", "text")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(process: str, form: str = "json", stream: TextIO | None = None) -> None:
    """Route the root logger (and so every library's) through one handler on `stream`
    (stderr by default) in `form`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if form == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                static_fields={"process": process},
                timestamp="ts",
                json_ensure_ascii=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("httpx", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
