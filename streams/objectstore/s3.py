"""The S3 calls the broker makes, served from the store over keep-alive HTTP/1.1: a
conditional PUT, GET (ranged) and HEAD, ListObjectsV2 (path style, one bucket), DELETE
and bulk delete. Errors are S3's XML bodies with its codes."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from streams.objectstore.log import xml_escape
from streams.objectstore.store import Store


@dataclass(slots=True)
class Request:
    method: str
    url: bytes
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class S3(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection from the broker, parsed with httptools."""

    def __init__(self, store: Store) -> None:
        import httptools

        self.store = store
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.request: Request | None = None
        self._header = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP server's transport

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request = Request("", b"")

    def on_url(self, url: bytes) -> None:
        assert self.request is not None  # on_message_begin came first
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.request is not None
        self.request.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        assert self.request is not None
        self.request.body += body

    def on_message_complete(self) -> None:
        assert self.request is not None and self.transport is not None
        self.request.method = self.parser.get_method().decode()
        status, headers, body = handle(self.store, self.request)
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {headers.get('Content-Length', len(body))}")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.request = None


REASONS = {
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    412: "Precondition Failed",
}


def handle(store: Store, req: Request) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(req.url.decode())
    _, _, key = unquote(parts.path).lstrip("/").partition("/")  # path style: /bucket/key
    query = parse_qs(parts.query, keep_blank_values=True)
    call = req.method if key else f"{req.method} bucket"
    store.requests[call] = store.requests.get(call, 0) + 1
    if req.method == "GET" and not key:
        return list_objects(store, query)
    if req.method == "POST" and "delete" in query:
        return bulk_delete(store, bytes(req.body))
    if req.method == "PUT":
        return put_object(store, key, req)
    if req.method in ("GET", "HEAD"):
        return get_object(store, key, req)
    if req.method == "DELETE":
        store.delete(key)
        return 204, {}, b""
    return 405, {}, b""


def put_object(store: Store, key: str, req: Request) -> tuple[int, dict[str, str], bytes]:
    current = store.objects.get(key)
    if_none = req.headers.get(b"if-none-match")
    if_match = req.headers.get(b"if-match")
    if if_none == b"*" and current is not None:
        return _error(412, "PreconditionFailed", key)
    if if_match is not None and (current is None or current.etag != if_match.decode()):
        return _error(412 if current is not None else 404, "PreconditionFailed", key)
    blob = store.put(key, bytes(req.body))
    return 200, {"ETag": blob.etag}, b""


def get_object(store: Store, key: str, req: Request) -> tuple[int, dict[str, str], bytes]:
    blob = store.get(key)
    if blob is None:
        return _error(404, "NoSuchKey", key)
    headers = {
        "ETag": blob.etag,
        "Last-Modified": formatdate(blob.modified, usegmt=True),
    }
    if_none = req.headers.get(b"if-none-match")
    if if_none is not None and if_none.decode() in (blob.etag, "*"):
        return 304, headers, b""
    if_match = req.headers.get(b"if-match")
    if if_match is not None and if_match.decode() not in (blob.etag, "*"):
        return _error(412, "PreconditionFailed", key)
    data = blob.data
    ranged = req.headers.get(b"range")
    status = 200
    if ranged and ranged.startswith(b"bytes="):
        first, _, last = ranged[6:].decode().partition("-")
        start = int(first) if first else max(0, len(data) - int(last))
        end = min(len(data) - 1, int(last)) if first and last else len(data) - 1
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data, status = data[start : end + 1], 206
    if req.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return status, headers, b""
    return status, headers, data


def list_objects(store: Store, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
    prefix = query.get("prefix", [""])[0]
    delimiter = query.get("delimiter", [""])[0]
    after = query.get("start-after", [""])[0]
    contents: list[bytes] = []
    prefixes: set[str] = set()
    for key, blob in store.listing(prefix):
        if key <= after:
            continue
        if delimiter and delimiter in key[len(prefix) :]:
            rest = key[len(prefix) :]
            prefixes.add(prefix + rest[: rest.index(delimiter) + len(delimiter)])
            continue
        contents.append(blob.listed)
    store.listed += len(contents)
    common = "".join(
        f"<CommonPrefixes><Prefix>{xml_escape(p)}</Prefix></CommonPrefixes>"
        for p in sorted(prefixes)
    )
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>tansu</Name>'
        + f"<Prefix>{xml_escape(prefix)}</Prefix><KeyCount>{len(contents)}</KeyCount>".encode()
        + b"<IsTruncated>false</IsTruncated>"
        + b"".join(contents)
        + common.encode()
        + b"</ListBucketResult>"
    )
    return 200, {"Content-Type": "application/xml"}, body


def bulk_delete(store: Store, body: bytes) -> tuple[int, dict[str, str], bytes]:
    keys = [unquote(k) for k in re.findall(r"<Key>(.*?)</Key>", body.decode())]
    deleted = []
    for key in keys:
        key = key.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        store.delete(key)
        deleted.append(f"<Deleted><Key>{xml_escape(key)}</Key></Deleted>")
    out = '<?xml version="1.0" encoding="UTF-8"?><DeleteResult>' + "".join(deleted)
    return 200, {"Content-Type": "application/xml"}, (out + "</DeleteResult>").encode()


def _error(status: int, code: str, key: str) -> tuple[int, dict[str, str], bytes]:
    body = f"<Error><Code>{code}</Code><Key>{xml_escape(key)}</Key></Error>".encode()
    return status, {"Content-Type": "application/xml"}, body
