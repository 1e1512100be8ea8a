"""What a loop's Personalizer configuration says that no catalog setting holds (the
policy's name, the model export frequency, the log retention, the auto-optimisation
start date, the model's creation time), kept per loop in `<data>/api/personalizer/` so
that a GET answers what the last PUT said. Per serving process, as catalogs are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.serving.state import State
from streams.files import write_atomic


def _path(st: State, loop: str) -> Path:
    return st.settings.data_dir / "api" / "personalizer" / f"{loop}.json"


def read(st: State, loop: str) -> dict[str, Any]:
    path = _path(st, loop)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(st: State, loop: str, **values: Any) -> dict[str, Any]:
    data = {**read(st, loop), **values}
    path = _path(st, loop)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data).encode())
    return data
