"""The evaluation jobs an API process has started: each a process of its own
(`loopwise evaluate <dir>`, at lower priority), its state read back from its directory.

A job's directory holds `spec.json` (written here), `progress.json` and `result.json`
(written by the job, atomically) and `log.txt`. Jobs outlive nothing: when the API stops,
the jobs it started are stopped, and one found without a result afterwards reads as
`stopped`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from engine.errors import UnknownEvent
from streams.files import write_atomic

NICE = 10  # below the serving processes: an evaluation waits, decisions do not


class Jobs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.optimizing: dict[str, str] = {}  # job id -> catalog, until its verdict is applied

    def start(self, catalog: str, spec: dict[str, Any], job_id: str | None = None) -> str:
        """Start a job (an evaluation, or with `kind: optimize` an optimisation whose
        verdict `promotions` hands back once it is done); its id. A given `job_id` that
        exists raises FileExistsError: the directory is created exclusively."""
        job_id = job_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        path = self.root / catalog / job_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        write_atomic(path / "spec.json", json.dumps({**spec, "id": job_id}).encode())
        with open(path / "log.txt", "wb") as out:
            self.running[job_id] = subprocess.Popen(
                [sys.executable, "-m", "loopwise.cli", "evaluate", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(NICE),
            )
        if spec.get("kind") == "optimize" and spec.get("promote"):
            self.optimizing[job_id] = catalog
        return job_id

    def promotions(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """Optimisations done since asked: (catalog, job id, the learning settings to
        promote, or None when the verdict keeps the current ones)."""
        out: list[tuple[str, str, dict[str, Any] | None]] = []
        for job_id, catalog in list(self.optimizing.items()):
            path = self.root / catalog / job_id / "result.json"
            if self._alive(job_id):
                continue
            del self.optimizing[job_id]
            if not path.exists():  # it died without a verdict: nothing to promote
                self.applied(catalog, job_id, {"promoted": False, "error": "the job stopped"})
                continue
            result = json.loads(path.read_text())
            name = (result.get("verdict") or {}).get("promote")
            chosen = [c for c in result.get("candidates", []) if c["name"] == name]
            out.append((catalog, job_id, chosen[0]["spec"]["learning"] if chosen else None))
        return out

    def applied(self, catalog: str, job_id: str, what: dict[str, Any]) -> None:
        """Record what became of an optimisation's verdict (read back by `status`)."""
        write_atomic(self.root / catalog / job_id / "applied.json", json.dumps(what).encode())

    def exists(self, catalog: str, job_id: str) -> bool:
        return (self.root / catalog / job_id).exists()

    def status(self, catalog: str, job_id: str) -> dict[str, Any]:
        path = self.root / catalog / job_id
        if "/" in job_id or not (path / "spec.json").exists():
            raise UnknownEvent(f"no evaluation {job_id!r} of catalog {catalog!r}", field="id")
        spec = json.loads((path / "spec.json").read_text())
        head = {k: spec[k] for k in ("id", "catalog", "since", "until", "candidates")}
        head["kind"] = spec.get("kind", "evaluation")
        if spec.get("scheduled"):
            head["scheduled"] = True
        if "family_alpha" in spec:  # an optimisation: each candidate at its Bonferroni share
            head["family_alpha"] = spec["family_alpha"]
        if (path / "applied.json").exists():
            head["applied"] = json.loads((path / "applied.json").read_text())
        for name in ("result.json", "progress.json"):
            if (path / name).exists():
                found: dict[str, Any] = json.loads((path / name).read_text())
                if name == "result.json" or self._alive(job_id):
                    return {**head, **found}
        if self._alive(job_id):
            return {**head, "state": "starting"}
        log = (path / "log.txt").read_text(errors="replace")[-2000:]
        return {**head, "state": "stopped", "log": log}

    def spec(self, catalog: str, job_id: str) -> dict[str, Any]:
        """The spec a job was started with (UnknownEvent if there is no such job)."""
        path = self.root / catalog / job_id / "spec.json"
        if "/" in job_id or job_id.startswith(".") or not path.exists():
            raise UnknownEvent(f"no evaluation {job_id!r} of catalog {catalog!r}", field="id")
        spec: dict[str, Any] = json.loads(path.read_text())
        return spec

    def delete(self, catalog: str, job_id: str) -> None:
        """Stop a job if it runs and remove it with its results."""
        self.spec(catalog, job_id)
        process = self.running.pop(job_id, None)
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        self.optimizing.pop(job_id, None)
        shutil.rmtree(self.root / catalog / job_id, ignore_errors=True)

    def list(self, catalog: str) -> list[dict[str, Any]]:
        folder = self.root / catalog
        ids = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        return [self.status(catalog, i) for i in ids]

    def _alive(self, job_id: str) -> bool:
        process = self.running.get(job_id)
        if process is None:
            return False
        if process.poll() is None:
            return True
        del self.running[job_id]  # reaped
        return False

    def close(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()
