"""User ids as keyed pseudonyms: what the decisions log and the exposure store hold.

HMAC-SHA256 under a deployment secret, so a log reader without the key cannot link a
pseudonym to a user id, and every serving process that shares the key maps a user to
the same pseudonym (caps and erasure meet across processes). Without LOOPWISE_PSEUDONYM_KEY
a key is generated once per data directory; processes on other data directories need the
same key set explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from streams.files import write_atomic


class Pseudonyms:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self.key_id = hashlib.sha256(b"loopwise-pseudonym-key:" + key).hexdigest()[:12]

    def of(self, user_id: str) -> str:
        return hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def load(configured: str, path: Path) -> Pseudonyms:
    """The configured key, else the one kept at `path` (created on first use, mode 0600)."""
    if configured:
        return Pseudonyms(configured.encode())
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, secrets.token_hex(32).encode())
        os.chmod(path, 0o600)
    return Pseudonyms(path.read_bytes().strip())
