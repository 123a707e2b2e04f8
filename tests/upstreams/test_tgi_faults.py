"""The TGI upstream (``tgi+URL``) against a TGI server that misbehaves on request
(:mod:`tests.support.tgistub`): what it sends, what comes through, and every failure mapped.

Through a real ``h2o-chat serve`` process, with TGI's own client and the project's; the
failover signal (:class:`UpstreamUnavailable`) and the chat template on the backend itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import text_generation
import text_generation.errors

import h2o_chat
from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    ChatMessage,
    GenerationRequest,
    Job,
    UpstreamUnavailable,
)
from h2o_chat.server.backends.tgi_upstream import DEFAULT_CONTEXT_LENGTH, TGIUpstreamBackend
from tests.support.servers import RunningServer, free_port, h2o_server
from tests.support.tgistub import ALTERNATIVE_ID, CONTEXT, END, TgiPlan, TgiStub, running_tgi_stub

UPSTREAM_TIMEOUT = 3  # seconds of silence the gateway accepts from the stub
TIMEOUT = 60


@pytest.fixture(scope="module")
def tgi_stub() -> Iterator[tuple[str, TgiStub]]:
    with running_tgi_stub() as running:
        yield running


@pytest.fixture(autouse=True)
def stub(tgi_stub: tuple[str, TgiStub]) -> TgiStub:
    """The stub, its plan reset for each test."""
    _, served = tgi_stub
    served.plan, served.bodies, served.abandoned = TgiPlan(), [], 0
    return served


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, tgi_stub: tuple[str, TgiStub]
) -> Iterator[RunningServer]:
    url, _ = tgi_stub
    args = ("--model", f"stub=tgi+{url}", "--upstream-timeout", str(UPSTREAM_TIMEOUT))
    with h2o_server(tmp_path_factory.mktemp("gateway"), *args) as server:
        yield server


def _tgi(gateway: RunningServer) -> text_generation.Client:
    return text_generation.Client(f"{gateway.url}/models/stub", timeout=TIMEOUT)


def test_tokens_come_through_as_the_engine_gave_them(gateway: RunningServer, stub: TgiStub) -> None:
    responses = list(_tgi(gateway).generate_stream("hi", max_new_tokens=10, top_n_tokens=2))
    tokens = [r.token for r in responses]
    assert [(t.id, t.text, t.logprob, t.special) for t in tokens] == [
        (100, "Hello", -0.5, False),
        (101, " wide", -1.5, False),
        (102, " world", -2.5, False),
        (END["id"], "<|endoftext|>", END["logprob"], True),  # the end token, as ours
    ]
    assert [[t.id for t in r.top_tokens or []] for r in responses] == [
        [t.id, ALTERNATIVE_ID] for t in tokens
    ]
    last = responses[-1]
    assert last.generated_text == "Hello wide world"
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert last.details.generated_tokens == 4
    assert stub.bodies == [
        {
            "inputs": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",  # ChatML
            "parameters": {
                "max_new_tokens": 10,
                "do_sample": False,
                "details": True,
                "decoder_input_details": False,
                "top_n_tokens": 2,
            },
        }
    ]


def test_what_the_gateway_learned_from_info(gateway: RunningServer) -> None:
    models = {m.id: m for m in h2o_chat.Client(gateway.url).models()}
    assert models["stub"].backend == "tgi"
    assert models["stub"].context_length == CONTEXT
    info = httpx.get(f"{gateway.url}/models/stub/info").json()
    assert info["max_total_tokens"] == CONTEXT
    assert info["max_top_n_tokens"] == 5  # TGI's default: its /info does not say
    with pytest.raises(text_generation.errors.ValidationError, match="from 0 to 5"):
        _tgi(gateway).generate("hi", top_n_tokens=6)


def test_sampling_parameters_are_sent_as_tgi_takes_them(
    gateway: RunningServer, stub: TgiStub
) -> None:
    with h2o_chat.Client(gateway.url) as client:
        chat = client.conversation("stub", system="Be brief.")
        first = chat.send(
            "hi",
            temperature=0.7,
            top_k=5,
            top_p=1.0,  # TGI refuses 1.0: a no-op, left out
            typical_p=0.9,
            seed=42,
            repetition_penalty=1.1,
            truncate=100,
            max_new_tokens=10,
        )
        chat.send("and?", do_sample=False, top_k=5, max_new_tokens=10)
    assert first.text == "Hello wide world"
    sampled, greedy = stub.bodies
    assert sampled["inputs"] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert sampled["parameters"] == {
        "max_new_tokens": 10,
        "do_sample": True,
        "details": True,
        "decoder_input_details": False,
        "temperature": 0.7,
        "top_k": 5,
        "typical_p": 0.9,
        "seed": 42,
        "repetition_penalty": 1.1,
        "truncate": 100,
    }
    assert greedy["inputs"].endswith(
        "<|im_start|>assistant\nHello wide world<|im_end|>\n"
        "<|im_start|>user\nand?<|im_end|>\n<|im_start|>assistant\n"
    )
    # TGI samples whenever a warper is set: greedy sends none (nor the 2023 defaults' either)
    assert greedy["parameters"]["do_sample"] is False
    assert not {"top_k", "temperature", "seed"} & set(greedy["parameters"])


@pytest.mark.parametrize("uncounted_end", [False, True])
def test_the_engines_own_length_limit(
    gateway: RunningServer, stub: TgiStub, uncounted_end: bool
) -> None:
    """The engine stops after three tokens, before our limit, on its last word or on an end
    token it does not count: either way three tokens and the end that closes the stream."""
    stub.plan.finish, stub.plan.uncounted_end = "length", uncounted_end
    response = _tgi(gateway).generate("hi", max_new_tokens=10)
    assert response.generated_text == "Hello wide world"
    assert response.details.finish_reason == "length"
    assert response.details.generated_tokens == 3
    assert [(t.id, t.special) for t in response.details.tokens] == [
        (100, False),
        (101, False),
        (102, False),
    ]


def test_special_tokens_keep_their_flag_and_stay_out_of_the_text(
    gateway: RunningServer, stub: TgiStub
) -> None:
    stub.plan.words = ["Hi", "<|tool|>", " there"]
    response = _tgi(gateway).generate("hi", max_new_tokens=10)
    assert [(t.text, t.special) for t in response.details.tokens] == [
        ("Hi", False),
        ("<|tool|>", True),
        (" there", False),
        ("<|endoftext|>", True),
    ]
    assert response.generated_text == "Hi there"
    message = {"role": "user", "content": "hi"}
    body = {"model": "stub", "messages": [message], "max_tokens": 10, "temperature": 0}
    answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=TIMEOUT)
    assert answer.json()["choices"][0]["message"]["content"] == "Hi there"


def _tgi_error(message: str, error_type: str) -> bytes:
    return orjson.dumps({"error": message, "error_type": error_type})


@pytest.mark.parametrize(
    ("status", "body", "raised", "message"),
    [
        (422, _tgi_error("bad input", "validation"), "ValidationError", "bad input"),
        (424, _tgi_error("OOM", "generation"), "GenerationError", "OOM"),
        (429, _tgi_error("busy", "overloaded"), "OverloadedError", "busy"),
        (500, _tgi_error("cut", "incomplete_generation"), "IncompleteGenerationError", "cut"),
        (503, b"no healthy upstream", "OverloadedError", "no healthy upstream"),  # a proxy's
        (400, b"bad request", "ValidationError", "bad request"),
    ],
)
def test_error_answers_keep_tgis_error_types(
    gateway: RunningServer, stub: TgiStub, status: int, body: bytes, raised: str, message: str
) -> None:
    """TGI's error type first, else the status's, as TGI's client reads them."""
    stub.plan.status, stub.plan.body = status, body
    with pytest.raises(getattr(text_generation.errors, raised)) as caught:
        _tgi(gateway).generate("hi", max_new_tokens=10)
    assert f"the upstream TGI server answered {status}: {message}" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "after", "error_type", "words"),
    [
        ("error", 2, "generation", "planned failure"),
        ("error", 0, "overloaded", "planned failure"),
        ("reset", 2, "incomplete_generation", "cut the stream"),
        ("unfinished", 2, "incomplete_generation", "unfinished"),
        ("malformed", 1, "generation", "malformed"),
        ("stall", 1, "incomplete_generation", "timed out"),
        ("endless", 1, "generation", "a line over 1048576 bytes"),
    ],
)
def test_a_failing_stream_ends_with_an_error_event_and_its_partial_text(
    gateway: RunningServer, stub: TgiStub, fault: str, after: int, error_type: str, words: str
) -> None:
    stub.plan.fault, stub.plan.fault_after = fault, after
    if fault == "error":
        stub.plan.error_type = error_type
    with h2o_chat.Client(gateway.url, max_retries=0) as client:
        chat = client.conversation("stub")
        with pytest.raises(h2o_chat.GenerationError) as caught:
            for _ in chat.stream("hi", max_new_tokens=10):
                pass
    assert caught.value.error_type == error_type
    assert words in str(caught.value)
    assert caught.value.partial_text == "".join(["Hello", " wide", " world"][:after])


def test_a_closed_answer_closes_the_upstream_request(gateway: RunningServer, stub: TgiStub) -> None:
    stub.plan.fault, stub.plan.fault_after = "stall", 1
    body = {"inputs": "hi", "parameters": {"max_new_tokens": 10}}
    url = f"{gateway.url}/models/stub/generate_stream"
    with httpx.stream("POST", url, json=body, timeout=TIMEOUT) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data:"))
    assert '"Hello"' in first
    deadline = time.monotonic() + 20
    while stub.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stub.abandoned == 1


# The backend itself: what a replica set fails over on, and where the chat template goes.

OVERLOADED = b'{"error":"Model is overloaded","error_type":"overloaded"}'


@contextlib.asynccontextmanager
async def _backend(url: str, chat_template: str | None = None) -> AsyncIterator[TGIUpstreamBackend]:
    backend = TGIUpstreamBackend(url, chat_template=chat_template, timeout=2, parallel=1)
    try:
        await backend.start()
        yield backend
    finally:
        await backend.aclose()


async def _answer(backend: TGIUpstreamBackend, *messages: ChatMessage) -> list[BackendToken]:
    request = GenerationRequest(messages=messages or [ChatMessage("user", "hi")], max_new_tokens=9)
    async with contextlib.aclosing(backend.stream(Job(request))) as tokens:
        return [token async for token in tokens]


@pytest.mark.parametrize(
    ("plan", "unavailable"),
    [
        (TgiPlan(status=503, body=b"no healthy upstream"), True),
        (TgiPlan(status=429, body=OVERLOADED), True),
        (TgiPlan(status=500, body=b'{"error":"x","error_type":"incomplete_generation"}'), True),
        (TgiPlan(fault="error", error_type="overloaded"), True),
        (TgiPlan(fault="reset"), True),
        (TgiPlan(fault="unfinished"), True),
        (TgiPlan(fault="stall"), True),
        (TgiPlan(status=422, body=b'{"error":"bad","error_type":"validation"}'), False),
        (TgiPlan(status=424, body=b'{"error":"OOM","error_type":"generation"}'), False),
        (TgiPlan(fault="error", error_type="validation"), False),
        (TgiPlan(fault="reset", fault_after=1), False),  # a token went out: too late to move
        (TgiPlan(fault="error", error_type="overloaded", fault_after=1), False),
    ],
)
async def test_what_fails_before_the_first_token_is_unavailable(
    tgi_stub: tuple[str, TgiStub], stub: TgiStub, plan: TgiPlan, unavailable: bool
) -> None:
    stub.plan = plan
    async with _backend(tgi_stub[0]) as backend:
        with pytest.raises(BackendError) as caught:
            await _answer(backend)
    assert isinstance(caught.value, UpstreamUnavailable) is unavailable


async def test_an_unreachable_server_is_unavailable() -> None:
    async with _backend(f"http://127.0.0.1:{free_port()}") as backend:
        assert backend.context_length == DEFAULT_CONTEXT_LENGTH  # no /info: assumed
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await _answer(backend)


async def test_the_chat_template_renders_the_inputs(
    tgi_stub: tuple[str, TgiStub], stub: TgiStub
) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    async with _backend(tgi_stub[0], template) as backend:
        tokens = await _answer(backend, ChatMessage("system", "S"), ChatMessage("user", "hi"))
    assert stub.bodies[-1]["inputs"] == "[system] S\n[user] hi\n[assistant]"
    assert [t.id for t in tokens] == [100, 101, 102, END["id"]] and tokens[-1].eos
    refusing = "{{ raise_exception('user turns only') if messages[0].role != 'user' }}"
    async with _backend(tgi_stub[0], refusing) as backend:
        with pytest.raises(BackendError, match="user turns only") as caught:
            await _answer(backend, ChatMessage("system", "S"))
    assert caught.value.error_type == "validation"
    assert len(stub.bodies) == 1  # a refused conversation is never sent
