"""The baseline server: a bare Starlette JSON echo on uvicorn, same settings as the API.

`python -m benchmarks.bare --port P` serves POST /echo (decode the JSON body, encode it
back: a response of the same size) on one worker with uvloop, httptools, no access log.
"""

from __future__ import annotations

import argparse
import sys

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def echo(request: Request) -> Response:
    body = _decoder.decode(await request.body())
    return Response(_encoder.encode(body), media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        workers=None,
    )


if __name__ == "__main__":
    main()
