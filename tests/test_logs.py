"""Structured logs (streams.logs): one JSON object per line, with the event id as a field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from streams import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_line_is_one_json_object_with_its_fields(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("api", "json", out)
    log = logging.getLogger("api.decide")
    log.error("catalog %s: %s", "shop", 'the model said "no"\nat all', extra={"event_id": "e-1"})
    log.info("plain ünïcode")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, "a message's newline stays inside its line"
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == 'catalog shop: the model said "no"\nat all'
    assert (first["level"], first["logger"], first["process"]) == ("ERROR", "api.decide", "api")
    assert first["event_id"] == "e-1" and first["ts"].endswith("+00:00")
    assert second["message"] == "plain ünïcode" and "event_id" not in second
    assert "ValueError: boom" in third["exc_info"]


def test_text_is_one_readable_line_for_a_terminal(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("simulate", "text", out)
    logging.getLogger("sim").warning("slow %d", 3)
    assert out.getvalue().rstrip().endswith("WARNING sim: slow 3")
