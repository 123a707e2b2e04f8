"""The sync and async clients against a protocol-faithful server that misbehaves on request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import h2o_chat
from h2o_chat import errors
from h2o_chat.client._errors import from_response
from h2o_chat.protocol.types import END_OF_TEXT, Completion
from tests.support.faultserver import FaultServer
from tests.support.servers import free_port

MESSAGES = [{"role": "user", "content": "Say hello"}]
Chat = Callable[..., Completion]


def _sync_chat(url: str, client_options: dict[str, Any], **kwargs: Any) -> Completion:
    with h2o_chat.Client(url, **client_options) as client:
        return client.chat("falcon-7b", MESSAGES, **kwargs)


def _async_chat(url: str, client_options: dict[str, Any], **kwargs: Any) -> Completion:
    async def main() -> Completion:
        async with h2o_chat.AsyncClient(url, **client_options) as client:
            return await client.chat("falcon-7b", MESSAGES, **kwargs)

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def chat(request: pytest.FixtureRequest, url: str) -> Chat:
    """``chat(**client_options)``: one stateless chat through the sync or the async client."""
    run = _sync_chat if request.param == "sync" else _async_chat
    return lambda **options: run(url, options)


def _paths(server: FaultServer) -> list[str]:
    return [
        f"{method} {path.split('/')[1] if path.count('/') > 1 else path}"
        for method, path in server.requests
    ]


def test_full_sequence_keeps_the_session_cookie(chat: Chat, fault: FaultServer) -> None:
    completion = chat()
    assert completion.text == "Hello wide world!"
    assert [t.text for t in completion.tokens] == ["Hello", " wide", " world", "!", END_OF_TEXT]
    assert completion.tokens[-1].special and completion.tokens[0].logprob == -0.5
    assert _paths(fault) == ["GET /", "POST /settings", "POST /conversation", "POST conversation"]
    body = fault.bodies[-1]
    assert body["parameters"]["temperature"] == 0.4 and body["stream"] is True


@pytest.mark.reliability(
    "Keep-alive comments between events",
    section="Client faults",
    did=(
        "Fault server sends a ':' comment before every event, body cut into 1-byte chunks, multi-"
        "byte UTF-8"
    ),
    expect="The exact answer text, comments ignored",
)
def test_keepalive_comments_and_one_byte_chunks(chat: Chat, fault: FaultServer) -> None:
    fault.plan.words = ["日本", "の", " café", " 🍣"]
    fault.plan.fault, fault.plan.fault_after = "keepalive", 0
    fault.plan.chunk_size = 1
    assert chat().text == "日本の café 🍣"


@pytest.mark.reliability(
    "429 with Retry-After, then success",
    section="Client faults",
    did="Fault server answers 429 Retry-After: 1 once, then streams",
    expect="Waits >= 1 s, retries once, full answer",
)
def test_rate_limit_honours_retry_after(chat: Chat, fault: FaultServer) -> None:
    fault.plan.statuses = [(429, {"retry-after": "1"})]
    started = time.monotonic()
    assert chat().text == "Hello wide world!"
    assert time.monotonic() - started >= 0.9
    assert _paths(fault).count("POST conversation") == 2


@pytest.mark.reliability(
    "503 twice, then success",
    section="Client faults",
    did="Fault server answers 503, 503, then streams; max_retries=2",
    expect="Two retries with backoff, full answer",
)
def test_503_twice_then_success(chat: Chat, fault: FaultServer) -> None:
    fault.plan.statuses = [(503, {}), (503, {})]
    assert chat(max_retries=2).text == "Hello wide world!"
    assert _paths(fault).count("POST conversation") == 3


@pytest.mark.reliability(
    "502/504/503, retries exhausted",
    section="Client faults",
    did="Fault server answers 502, 504, 503; max_retries=2",
    expect="ServerError carrying the last status (503), 3 attempts",
)
def test_retries_give_up_with_the_last_error(chat: Chat, fault: FaultServer) -> None:
    fault.plan.statuses = [(502, {}), (504, {}), (503, {})]
    with pytest.raises(errors.ServerError) as caught:
        chat(max_retries=2)
    assert caught.value.status_code == 503
    assert _paths(fault).count("POST conversation") == 3


def test_rate_limit_without_retries(chat: Chat, fault: FaultServer) -> None:
    fault.plan.statuses = [(429, {"retry-after": "7"})]
    with pytest.raises(errors.RateLimitError) as caught:
        chat(max_retries=0)
    assert caught.value.retry_after == 7.0


@pytest.mark.reliability(
    "HTTP {status} is typed, not retried",
    section="Client faults",
    did="Fault server answers the status once",
    expect="The matching typed error, exactly one attempt",
)
@pytest.mark.parametrize(
    ("status", "error"),
    [(404, errors.NotFoundError), (400, errors.BadRequestError), (500, errors.ServerError)],
)
def test_status_errors_are_typed_and_not_retried(
    chat: Chat, fault: FaultServer, status: int, error: type[Exception]
) -> None:
    fault.plan.statuses = [(status, {})]
    with pytest.raises(error):
        chat()
    assert _paths(fault).count("POST conversation") == 1


@pytest.mark.reliability(
    "Stream fault after 2 tokens: {fault_name}",
    section="Client faults",
    did=(
        "Sync and async clients; the fault server sends 2 tokens, then: reset / malformed "
        "line / TGI error event / a 4 MB line without newline / stall (1 s read timeout)"
    ),
    expect="A typed error carrying exactly the 2 tokens' text; one request, no retry, no duplicate",
)
@pytest.mark.parametrize(
    ("fault_name", "error", "message"),
    [
        ("reset", errors.StreamClosedError, "connection broken"),
        ("malformed", errors.MalformedStreamError, "malformed event"),
        ("error", errors.GenerationError, "overloaded"),
        ("endless", errors.MalformedStreamError, "over"),
        ("stall", errors.TimeoutException, "read timeout"),
    ],
)
def test_stream_faults_keep_the_partial_text_and_are_not_retried(
    chat: Chat, fault: FaultServer, fault_name: str, error: type[errors.H2oError], message: str
) -> None:
    fault.plan.fault, fault.plan.fault_after = fault_name, 2
    with pytest.raises(error, match=message) as caught:
        chat(timeout=1.0)
    assert caught.value.partial_text == "Hello wide"
    assert _paths(fault).count("POST conversation") == 1
    if fault_name == "error":
        assert isinstance(caught.value, errors.GenerationError)
        assert caught.value.error_type == "overloaded"


@pytest.mark.reliability(
    "Connection refused",
    section="Client faults",
    did="Sync and async clients against a free loopback port",
    expect="ConnectError after the allowed retries",
)
def test_connection_refused_is_a_connect_error(chat: Chat) -> None:
    with pytest.raises(errors.ConnectError):
        _sync_chat(f"http://127.0.0.1:{free_port()}", {"max_retries": 1})
    with pytest.raises(errors.ConnectError):
        _async_chat(f"http://127.0.0.1:{free_port()}", {"max_retries": 0})


@pytest.mark.reliability(
    "Client: unknown model",
    section="Bad input",
    did="client.chat with a model the server refuses in /settings",
    expect="UnknownModelError",
)
def test_unknown_model_is_refused(url: str) -> None:
    with h2o_chat.Client(url) as client, pytest.raises(errors.UnknownModelError):
        client.chat("unknown/model", MESSAGES)


@pytest.mark.reliability(
    "Client: bad argument refused before the network",
    section="Bad input",
    did=(
        "client.chat_stream with empty messages, unknown role, None content, temperature -1, "
        "max_new_tokens 0, unknown option, unknown parameter"
    ),
    expect="InvalidRequestError; the fault server saw no request",
)
@pytest.mark.parametrize(
    ("messages", "kwargs"),
    [
        ([], {}),
        ([{"role": "wizard", "content": "x"}], {}),
        ([{"role": "user", "content": None}], {}),
        (MESSAGES, {"temperature": -1}),
        (MESSAGES, {"max_new_tokens": 0}),
        (MESSAGES, {"options": {"colour": "red"}}),
        (MESSAGES, {"bogus": 1}),
    ],
)
def test_bad_input_is_refused_before_the_network(
    url: str, fault: FaultServer, messages: Any, kwargs: dict[str, Any]
) -> None:
    with h2o_chat.Client(url) as client, pytest.raises(errors.InvalidRequestError):
        client.chat_stream("falcon-7b", messages, **kwargs)
    assert fault.requests == []


def test_warm_client_costs_two_requests_and_no_connection(url: str, fault: FaultServer) -> None:
    with h2o_chat.Client(url) as client:
        client.chat("falcon-7b", MESSAGES)
        ports, count = set(fault.client_ports), len(fault.requests)
        for _ in range(3):
            client.chat("falcon-7b", MESSAGES)
            assert len(fault.requests) - count == 2
            count = len(fault.requests)
        conversation = client.conversation("falcon-7b")
        conversation.send("first")
        count = len(fault.requests)
        assert conversation.send("second").text == "Hello wide world!"
        assert len(fault.requests) - count == 1
        assert fault.client_ports == ports
    assert fault.bodies[-1]["inputs"] == "second"


def test_async_warm_client_and_concurrent_first_use(url: str, fault: FaultServer) -> None:
    async def main() -> list[str]:
        async with h2o_chat.AsyncClient(url) as client:
            # Many first requests at once still share one session bootstrap.
            results = await asyncio.gather(*(client.chat("falcon-7b", MESSAGES) for _ in range(8)))
            conversation = client.conversation("falcon-7b")
            await conversation.send("first")
            count = len(fault.requests)
            events = [event async for event in conversation.stream("second")]
            assert len(fault.requests) - count == 1
            assert events[-1].generated_text == "Hello wide world!"
            return [r.text for r in results]

    assert set(asyncio.run(main())) == {"Hello wide world!"}
    assert _paths(fault).count("GET /") == 1


def test_conversation_stop_and_delete(url: str, fault: FaultServer) -> None:
    with h2o_chat.Client(url) as client:
        conversation = client.conversation("falcon-7b")
        conversation.send("hello")
        assert conversation.messages == [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hello wide world!"},
        ]
        conversation.stop()
        conversation_id = conversation.id
        conversation.delete()
        assert conversation.id is None
        resumed = client.conversation("falcon-7b", id=conversation_id)
        with pytest.raises(errors.NotFoundError):
            resumed.send("are you there?")


def test_an_answer_that_is_not_the_protocol_is_a_protocol_error(
    chat: Chat, fault: FaultServer
) -> None:
    fault.plan.fault = "bad-conversation"
    with pytest.raises(errors.ProtocolError, match="unexpected answer to /conversation"):
        chat()


@pytest.mark.parametrize("base_url", ["localhost:8000", "ftp://127.0.0.1", "127.0.0.1:8000/x"])
def test_a_base_url_without_http_is_refused(base_url: str) -> None:
    with pytest.raises(errors.InvalidRequestError, match="http://"):
        h2o_chat.Client(base_url)
    with pytest.raises(errors.InvalidRequestError, match="http://"):
        h2o_chat.AsyncClient(base_url)


def test_error_messages_are_short_whatever_the_body() -> None:
    """The status mapping is pure: an HTML page or a long text never floods the message."""
    request = httpx.Request("GET", "http://127.0.0.1/x")
    page = "<!doctype html><html><body>" + "<p>lost</p>" * 500 + "</body></html>"
    html = httpx.Response(404, text=page, headers={"content-type": "text/html"}, request=request)
    assert from_response(html).message == "HTTP 404 from GET /x: Not Found"
    text = httpx.Response(503, text="busy\n" * 500, request=request)
    error = from_response(text)
    assert isinstance(error, errors.ServerError) and len(error.message) < 250
    json = httpx.Response(400, json={"error": "inputs is empty"}, request=request)
    assert from_response(json).message.endswith("inputs is empty")


@pytest.mark.parametrize("model", ["", "   ", None])
def test_an_empty_model_is_refused_by_every_entry_point(
    url: str, fault: FaultServer, model: object
) -> None:
    with h2o_chat.Client(url) as client:
        with pytest.raises(errors.UnknownModelError):
            client.chat_stream(model, MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(errors.UnknownModelError):
            client.conversation(model)  # type: ignore[arg-type]
    assert fault.requests == []
