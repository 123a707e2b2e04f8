"""An OpenAI-compatible upstream that answers with the extra headers that reached it, over
HTTP or HTTPS: the tests of a model's ``headers`` and ``ca_bundle``.

``python -m tests.support.echo_upstream PORT [CERTFILE KEYFILE]`` serves on 127.0.0.1 (HTTPS
with the certificate given); :func:`echo_upstream` runs it for a test. Every answer to
``POST /v1/chat/completions`` streams one text, the request's ``x-`` headers as
``name=value`` pairs in order (``"x-team=chat x-trace=t1"``), then ``finish_reason: stop``.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import IMPORTABLE, free_port, run_process


def _chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return (
        b"data: " + orjson.dumps({"object": "chat.completion.chunk", "choices": [choice]}) + b"\n\n"
    )


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "echo-headers", "object": "model"}]})


async def completions(request: Request) -> Response:
    extra = sorted((k, v) for k, v in request.headers.items() if k.startswith("x-"))
    text = " ".join(f"{name}={value}" for name, value in extra)

    async def events() -> AsyncIterator[bytes]:
        yield _chunk({"role": "assistant", "content": text})
        yield _chunk({}, "stop")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ]
)


@contextlib.contextmanager
def echo_upstream(log_dir: Path, ca: trustme.CA | None = None) -> Iterator[str]:
    """The upstream on a free loopback port, over HTTPS with a certificate for 127.0.0.1 that
    ``ca`` signed, if given; yields its ``/v1`` URL."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.echo_upstream", str(port)]
    tls = None
    if ca is not None:
        certificate = log_dir / f"upstream-{port}.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(certificate))
        argv += [str(certificate), str(certificate)]
        tls = ssl.create_default_context()
        ca.configure_trust(tls)
    log_path = log_dir / f"upstream-{port}.log"
    with run_process(argv, port, log_path, "/v1/models", IMPORTABLE, tls) as server:
        yield server.url + "/v1"


if __name__ == "__main__":
    certfile, keyfile = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else (None, None)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
