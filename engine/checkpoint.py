"""Checkpoint encoding: a JSON header and named blobs, sealed by a sha256 trailer.

Layout: MAGIC | u32 header length | header JSON | blobs (lengths in the header) | sha256
of everything before it. `decode` refuses anything truncated, extended or altered.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping

from engine.errors import CorruptCheckpoint

MAGIC = b"LWCKPT1\n"
_LEN = struct.Struct(">I")
_DIGEST = 32


def encode(header: Mapping[str, object], blobs: Mapping[str, bytes]) -> bytes:
    meta = {"header": dict(header), "blobs": [[name, len(data)] for name, data in blobs.items()]}
    head = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    body = b"".join([MAGIC, _LEN.pack(len(head)), head, *blobs.values()])
    return body + hashlib.sha256(body).digest()


def decode(raw: bytes) -> tuple[dict[str, object], dict[str, bytes]]:
    if len(raw) < len(MAGIC) + _LEN.size + _DIGEST or not raw.startswith(MAGIC):
        raise CorruptCheckpoint("checkpoint is truncated or not a Loopwise checkpoint")
    body, digest = raw[:-_DIGEST], raw[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptCheckpoint("checkpoint sha256 does not match its content")
    start = len(MAGIC) + _LEN.size
    (head_len,) = _LEN.unpack_from(body, len(MAGIC))
    try:
        meta = json.loads(body[start : start + head_len])
        header = dict(meta["header"])
        layout = [(str(name), int(size)) for name, size in meta["blobs"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpoint(f"checkpoint header is unreadable: {exc}") from exc
    blobs: dict[str, bytes] = {}
    offset = start + head_len
    for name, size in layout:
        blobs[name] = body[offset : offset + size]
        offset += size
    if offset != len(body):
        raise CorruptCheckpoint("checkpoint blob lengths do not add up to its size")
    return header, blobs
