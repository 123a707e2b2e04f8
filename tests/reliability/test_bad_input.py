"""Bad input: each request gets a clear 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import h2o_chat
from h2o_chat import errors
from h2o_chat.protocol.types import ErrorEvent
from tests.support.h2o import new_conversation, read_events, session_client
from tests.support.lab import Lab, RecordProperty, still_serving
from tests.support.servers import free_port

SECTION = "Bad input"
UNKNOWN_ID = "0123456789abcdef01234567"
TEN_MB = 10 << 20
OK_TURN = {"inputs": "hi", "parameters": {}}


@dataclass(frozen=True)
class Bad:
    """A bad request: what it is, and the status and words the answer must carry."""

    name: str
    path: str  # "{id}" is a conversation of the session
    status: int
    says: str
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"

    def __str__(self) -> str:
        return self.name


def _turn(**parameters: Any) -> dict[str, Any]:
    return {"inputs": "hi", "parameters": parameters}


def _chunked(size: int) -> Iterator[bytes]:
    """A body without Content-Length, sent in 64 KiB pieces."""
    piece = b"x" * (64 << 10)
    for _ in range(size // len(piece)):
        yield piece


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
SETTINGS_FORM = b"ethicsModalAccepted=true&activeModel=echo"
CONVERSE = "/conversation/{id}"
ID_ROUTES = [(m, CONVERSE) for m in ("GET", "POST", "DELETE")] + [
    ("POST", CONVERSE + "/stop-generating")
]
BAD_IDS = {"malformed": "not-an-id", "upper-case": "A" * 24, "unknown": UNKNOWN_ID}
TRAVERSAL = "/conversation/..%2F..%2Fetc%2Fpasswd"
V1 = "/v1/chat/completions"
V1_OK = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

CASES = [
    Bad("inputs missing", CONVERSE, 400, "'inputs'", json={"parameters": {}}),
    Bad("inputs empty", CONVERSE, 400, "'inputs'", json={"inputs": ""}),
    Bad("inputs blank", CONVERSE, 400, "'inputs'", json={"inputs": " \n\t "}),
    Bad("inputs not a string", CONVERSE, 400, "'inputs'", json={"inputs": ["hi"]}),
    Bad(
        "inputs over the body limit (2 MiB)",
        CONVERSE,
        413,
        "limit",
        json={"inputs": "x" * (2 << 20)},
    ),
    Bad("invalid JSON", CONVERSE, 400, "not valid JSON", content=b'{"inputs": "hi"', headers=JSON),
    Bad("JSON that is not an object", CONVERSE, 400, "JSON object", json=["inputs", "hi"]),
    Bad(
        "wrong content type (application/xml)",
        CONVERSE,
        415,
        "application/json",
        content=b"<inputs>hi</inputs>",
        headers={"content-type": "application/xml"},
    ),
    Bad("no content type", CONVERSE, 415, "application/json", content=b'{"inputs": "hi"}'),
    Bad("unknown model", "/conversation", 400, "unknown model", json={"model": "gpt-17"}),
    Bad("model missing", "/conversation", 400, "'model'", json={}),
    Bad("model not a string", "/conversation", 400, "'model'", json={"model": 7}),
    Bad("negative temperature", CONVERSE, 400, "temperature", json=_turn(temperature=-0.5)),
    Bad(
        "temperature of the wrong type", CONVERSE, 400, "temperature", json=_turn(temperature="hot")
    ),
    Bad("max_new_tokens 0", CONVERSE, 400, "max_new_tokens", json=_turn(max_new_tokens=0)),
    Bad(
        "max_new_tokens a million",
        CONVERSE,
        400,
        "max_new_tokens",
        json=_turn(max_new_tokens=10**6),
    ),
    Bad(
        "max_new_tokens not an integer",
        CONVERSE,
        400,
        "max_new_tokens",
        json=_turn(max_new_tokens=1.5),
    ),
    Bad("truncate above the context", CONVERSE, 400, "truncate", json=_turn(truncate=100_000)),
    Bad("top_p above 1", CONVERSE, 400, "top_p", json=_turn(top_p=1.5)),
    Bad("too many stop sequences", CONVERSE, 400, "stop", json=_turn(stop=list("abcde"))),
    Bad("unknown parameter", CONVERSE, 400, "unknown parameter", json=_turn(temprature=0.5)),
    Bad(
        "parameters not an object",
        CONVERSE,
        400,
        "parameters",
        json={"inputs": "hi", "parameters": 3},
    ),
    Bad(
        "options.id not a uuid",
        CONVERSE,
        400,
        "options.id",
        json={**OK_TURN, "options": {"id": "x"}},
    ),
    *(
        Bad(
            f"{kind} conversation id ({method} {route.format(id=bad_id)})",
            route.format(id=bad_id),
            404,
            "not found",
            json=OK_TURN,
            method=method,
        )
        for kind, bad_id in BAD_IDS.items()
        for method, route in ID_ROUTES
    ),
    Bad("path traversal as a conversation id", TRAVERSAL, 404, "not found", method="GET"),
    Bad(
        "form POST without a referer",
        "/settings",
        403,
        "referer",
        content=SETTINGS_FORM,
        headers=FORM,
    ),
    Bad(
        "form POST with a foreign referer",
        "/settings",
        403,
        "referer",
        content=SETTINGS_FORM,
        headers={**FORM, "referer": "http://evil.example/", "origin": "http://evil.example"},
    ),
    Bad(
        "text/plain POST to a conversation without a referer",
        CONVERSE,
        403,
        "referer",
        content=b"inputs=hi",
        headers={"content-type": "text/plain"},
    ),
    Bad(
        "settings with an unknown activeModel",
        "/settings",
        400,
        "unknown model",
        content=b"activeModel=gpt-17",
        headers=FORM | {"referer": "{url}/"},
    ),
    Bad(
        "10 MB body with Content-Length",
        CONVERSE,
        413,
        "limit",
        content=b"x" * TEN_MB,
        headers=JSON,
    ),
    Bad(
        "10 MB body, chunked",
        CONVERSE,
        413,
        "limit",
        content=b"",
        headers=JSON | {"x-chunked": "1"},
    ),
    Bad("OpenAI: messages missing", V1, 400, "messages", json={"model": "echo"}),
    Bad("OpenAI: messages empty", V1, 400, "messages", json={"model": "echo", "messages": []}),
    Bad(
        "OpenAI: unknown role",
        V1,
        400,
        "role",
        json={**V1_OK, "messages": [{"role": "wizard", "content": "x"}]},
    ),
    Bad("OpenAI: unknown model", V1, 404, "unknown model", json={**V1_OK, "model": "gpt-17"}),
    Bad("OpenAI: negative temperature", V1, 400, "temperature", json={**V1_OK, "temperature": -1}),
    Bad("OpenAI: max_tokens 0", V1, 400, "max_tokens", json={**V1_OK, "max_tokens": 0}),
    Bad("OpenAI: n = 2", V1, 400, "n = 1", json={**V1_OK, "n": 2}),
    Bad("OpenAI: invalid JSON", V1, 400, "not valid JSON", content=b"{", headers=JSON),
    Bad("OpenAI: 10 MB body", V1, 413, "limit", content=b"x" * TEN_MB, headers=JSON),
]


@pytest.fixture(scope="module")
def session(test_lab: Lab) -> Iterator[tuple[httpx.Client, str]]:
    """A raw client of one session and one of its conversations (echo)."""
    with session_client(test_lab.url) as client:
        yield client, new_conversation(client, "echo")


def _message(response: httpx.Response) -> str:
    """The error message of a ``{"error": ...}`` body (OpenAI's shape on /v1/)."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    if isinstance(error, dict):
        error = error["message"]
    assert isinstance(error, str)
    return error


@pytest.mark.reliability(
    "{case}",
    section=SECTION,
    did="A raw HTTP request to the synthetic server with the bad part named in the case",
    expect=(
        "The case's 4xx (400, 403, 404, 413 or 415) with a JSON {'error': ...} naming the "
        "problem, no traceback; then the server still answers a fresh conversation"
    ),
)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_request_is_a_clear_4xx(
    test_lab: Lab,
    session: tuple[httpx.Client, str],
    case: Bad,
    record_property: RecordProperty,
) -> None:
    client, conversation_id = session
    headers = {k: v.replace("{url}", test_lab.url) for k, v in case.headers.items()}
    content: Any = case.content
    if headers.pop("x-chunked", None):
        content = _chunked(TEN_MB)
    response = client.request(
        case.method,
        case.path.replace("{id}", conversation_id),
        json=case.json if case.content is None else None,
        content=content,
        headers=headers,
    )
    message = _message(response)
    record_property("status", response.status_code)
    record_property("error", message[:120])
    assert response.status_code == case.status, response.text[:300]
    assert case.says.lower() in message.lower(), f"{message!r} does not name {case.says!r}"
    assert "Traceback" not in response.text and 'File "' not in response.text
    still_serving(test_lab.url)


@pytest.mark.reliability(
    "inputs over the model's context",
    section=SECTION,
    did="POST /conversation/{id} with 9000 words of inputs to a model of 8192 tokens",
    expect=(
        "As TGI streams it: HTTP 200 and one validation error event naming the limit "
        "(`inputs` tokens + `max_new_tokens` must be <= 8192); the server keeps serving"
    ),
)
def test_inputs_over_the_context(test_lab: Lab, session: tuple[httpx.Client, str]) -> None:
    client, conversation_id = session
    body = {"inputs": "word " * 9000, "parameters": {"max_new_tokens": 10}}
    with client.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        assert response.status_code == 200
        events = read_events(response)
    assert len(events) == 1 and isinstance(events[0], ErrorEvent), events
    assert events[0].error_type == "validation"
    assert "must be <= 8192" in events[0].error
    still_serving(test_lab.url)


@pytest.mark.reliability(
    "Client: a message role of the wrong type",
    section=SECTION,
    did="client.chat with a role that is a list or a dict, against a port nobody listens on",
    expect="InvalidRequestError naming the role, before any network access",
)
@pytest.mark.parametrize("role", [[], {}, ["user"]], ids=repr)
def test_client_refuses_a_role_of_the_wrong_type(role: Any) -> None:
    with (
        h2o_chat.Client(f"http://127.0.0.1:{free_port()}", max_retries=0) as client,
        pytest.raises(errors.InvalidRequestError, match="role"),
    ):
        client.chat("falcon-7b", [{"role": role, "content": "hi"}])
