"""Bad input on TGI's routes: TGI's error answer naming the problem; the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from tests.support.servers import RunningServer
from tests.tgi.servers import serve

SECTION = "Bad input"
RecordProperty = Callable[[str, object], None]  # pytest's record_property fixture
JSON = {"content-type": "application/json"}
OVER_THE_CONTEXT = "word " * 9000  # the synthetic engine's context is 8192


@dataclass(frozen=True)
class Bad:
    """A bad TGI request: the status, error type and words of TGI's answer (no error type:
    the server-wide gate's ``{"error"}``, sent before any route is chosen)."""

    name: str
    status: int
    error_type: str
    says: str
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/generate"

    def __str__(self) -> str:
        return self.name


def _with(**parameters: Any) -> dict[str, Any]:
    return {"inputs": "hi", "parameters": parameters}


CASES = [
    Bad("TGI: body not JSON", 400, "validation", "not valid JSON", content=b"{", headers=JSON),
    Bad("TGI: no content type", 415, "validation", "application/json", content=b"{}"),
    Bad("TGI: JSON not an object", 400, "validation", "JSON object", body=["hi"]),
    Bad("TGI: inputs missing", 422, "validation", "`inputs`", body={"parameters": {}}),
    Bad("TGI: inputs empty", 422, "validation", "`inputs`", body={"inputs": " "}),
    Bad("TGI: inputs not a string", 422, "validation", "`inputs`", body={"inputs": 7}),
    Bad(
        "TGI: parameters not an object",
        422,
        "validation",
        "`parameters`",
        body={"inputs": "x", "parameters": []},
    ),
    Bad("TGI: unknown parameter", 422, "validation", "temprature", body=_with(temprature=1.0)),
    Bad("TGI: best_of 2", 422, "validation", "best_of", body=_with(best_of=2, do_sample=True)),
    Bad("TGI: watermark", 422, "validation", "watermark", body=_with(watermark=True)),
    Bad(
        "TGI: grammar",
        422,
        "validation",
        "grammar",
        body=_with(grammar={"type": "json", "value": {}}),
    ),
    Bad(
        "TGI: frequency_penalty",
        422,
        "validation",
        "frequency_penalty",
        body=_with(frequency_penalty=1.0),
    ),
    Bad("TGI: adapter_id", 422, "validation", "adapter_id", body=_with(adapter_id="x")),
    Bad(
        "TGI: top_n_tokens above the engine's 5",
        422,
        "validation",
        "top_n_tokens",
        body=_with(top_n_tokens=6),
    ),
    Bad(
        "TGI: top_n_tokens negative", 422, "validation", "top_n_tokens", body=_with(top_n_tokens=-1)
    ),
    Bad("TGI: temperature negative", 422, "validation", "temperature", body=_with(temperature=-1)),
    Bad(
        "TGI: max_new_tokens over the context",
        422,
        "validation",
        "max_new_tokens",
        body=_with(max_new_tokens=10**6),
    ),
    Bad("TGI: five stop sequences", 422, "validation", "stop", body=_with(stop=list("abcde"))),
    Bad(
        "TGI: inputs over the context",
        422,
        "validation",
        "must be <= 8192",
        body={"inputs": OVER_THE_CONTEXT},
    ),
    Bad(
        "TGI: stream not a boolean",
        422,
        "validation",
        "`stream`",
        body={"inputs": "x", "stream": 1},
        path="/",
    ),
    Bad(
        "TGI: body over the limit (2 MiB)",
        413,
        "",
        "limit",
        body={"inputs": "x" * (2 << 20)},
    ),
    Bad(
        "TGI: unknown model prefix",
        404,
        "not_found",
        "/models/gpt-17",
        body={"inputs": "x"},
        path="/models/gpt-17/generate",
    ),
    Bad(
        "TGI: tokenize on a model without a tokenizer",
        404,
        "no fast tokenizer",
        "no tokenizer",
        body={"inputs": "x"},
        path="/models/slow/tokenize",
    ),
]
STREAMED = [  # the same mistakes on the streaming route: TGI's error event in a 200 stream
    Bad(
        "TGI stream: best_of 2",
        200,
        "validation",
        "best_of",
        body=_with(best_of=2),
        path="/generate_stream",
    ),
    Bad(
        "TGI stream: decoder_input_details",
        200,
        "validation",
        "decoder_input_details",
        body=_with(decoder_input_details=True),
        path="/generate_stream",
    ),
    Bad(
        "TGI stream: inputs over the context",
        200,
        "validation",
        "must be <= 8192",
        body={"inputs": OVER_THE_CONTEXT},
        path="/generate_stream",
    ),
    Bad(
        "TGI stream: unknown parameter",
        200,
        "validation",
        "temprature",
        body={**_with(temprature=1), "stream": True},
        path="/",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    args = ("--model", "echo=synthetic", "--model", "slow=python:tests.tgi.backends:slow")
    with serve(tmp_path_factory.mktemp("tgi-bad-input"), *args) as running:
        yield running


def _still_serving(server: RunningServer) -> None:
    answer = httpx.post(f"{server.url}/generate", json={"inputs": "still here"}, timeout=30)
    assert answer.json() == {"generated_text": "still here"}


def _send(server: RunningServer, case: Bad) -> tuple[httpx.Response, dict[str, Any]]:
    """The response and its error object: the body, or a stream's only event."""
    response = httpx.post(
        server.url + case.path,
        json=case.body if case.content is None else None,
        content=case.content,
        headers=case.headers,
        timeout=30,
    )
    if response.headers["content-type"] == "text/event-stream":
        events = [line for line in response.text.split("\n\n") if line.startswith("data:")]
        assert len(events) == 1, response.text[:300]
        return response, orjson.loads(events[0][5:])
    assert response.headers["content-type"] == "application/json", response.text[:300]
    return response, response.json()


@pytest.mark.reliability(
    "{case}",
    section=SECTION,
    did="A raw HTTP request to a TGI route (/generate unless named) of the synthetic server",
    expect=(
        "The case's status with TGI's JSON {'error', 'error_type'} naming the problem (on a "
        "streaming route: HTTP 200 and that object as the only event; a body over the limit "
        "is refused by the server-wide gate with {'error'}), no traceback; then the server "
        "still answers /generate"
    ),
)
@pytest.mark.parametrize("case", CASES + STREAMED, ids=str)
def test_bad_tgi_request_is_tgi_error(
    server: RunningServer, case: Bad, record_property: RecordProperty
) -> None:
    response, error = _send(server, case)
    record_property("status", response.status_code)
    record_property("error", f"{error.get('error_type')}: {str(error.get('error'))[:100]}")
    assert response.status_code == case.status, response.text[:300]
    assert set(error) == ({"error", "error_type"} if case.error_type else {"error"}), error
    assert error.get("error_type", "") == case.error_type
    assert case.says.lower() in error["error"].lower(), error
    assert "Traceback" not in response.text and 'File "' not in response.text
    _still_serving(server)
