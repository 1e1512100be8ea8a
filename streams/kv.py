"""The one adapter around rocksdict: small local RocksDB key-value stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import AccessType, Options, Rdict, WriteBatch

# RocksDB's default 64 MB write buffer per store let the API grow by about 250 MB in a
# 30-minute soak (5 stores, each memtable filling before its first flush: 54 MB of WAL in
# the exposures store at minute 16); 4 MB keeps each store's memtables under 8 MB.
WRITE_BUFFER_BYTES = 4 << 20


class KV:
    """Bytes to bytes, with prefix scans and atomic batches. `ttl` drops old keys lazily."""

    def __init__(self, path: Path, ttl_seconds: int | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        access = AccessType.with_ttl(ttl_seconds) if ttl_seconds else AccessType.read_write()
        self.path = path
        self._db = Rdict(str(path), options=options, access_type=access)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def put(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        del self._db[key]

    def write(self, puts: dict[bytes, bytes], deletes: list[bytes] = []) -> None:  # noqa: B006
        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            batch.put(key, value)
        for key in deletes:
            batch.delete(key)
        self._db.write(batch)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, value

    def flush(self) -> None:
        self._db.flush(wait=True)

    def close(self) -> None:
        self._db.close()
