"""The TGI upstream against a real TGI server: the project's own TGI routes in another
``h2o-chat serve`` process, serving the built-in model.

The gateway renders the conversation with ChatML and sends it as ``inputs``; the same
``inputs`` sent straight to the engine must give the same tokens (ids, text, logprobs,
special flags, top tokens), finish reasons and seeds. (The engine's TGI routes template
``inputs`` once more, as one user message: both paths see the same prompt.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import text_generation
import text_generation.errors
from text_generation.types import Token

import h2o_chat
from h2o_chat.server.backends.base import ChatMessage
from h2o_chat.server.backends.chat_template import ChatTemplate
from tests.support.servers import RunningServer, h2o_server

QUESTION = "What is the capital of Japan?"
INPUTS = ChatTemplate().render([ChatMessage("user", QUESTION)])  # what the gateway sends
TIMEOUT = 120


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The built-in model behind h2o-chat's TGI routes (its root is a TGI server)."""
    with h2o_server(tmp_path_factory.mktemp("engine"), "--model", "smol=builtin") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, engine: RunningServer
) -> Iterator[RunningServer]:
    args = ("--model", f"tgi=tgi+{engine.url}", "--upstream-timeout", "60")
    with h2o_server(tmp_path_factory.mktemp("gateway"), *args) as server:
        yield server


def _client(server: RunningServer) -> text_generation.Client:
    return text_generation.Client(server.url, timeout=TIMEOUT)


def _same_tokens(through: list[Token], direct: list[Token]) -> None:
    assert [(t.id, t.text, t.special) for t in through] == [
        (t.id, t.text, t.special) for t in direct
    ]
    assert [t.logprob for t in through] == pytest.approx([t.logprob for t in direct], abs=1e-3)


def test_the_engines_tokens_come_through(engine: RunningServer, gateway: RunningServer) -> None:
    direct = _client(engine).generate(INPUTS, max_new_tokens=40, top_n_tokens=3)
    streamed = list(_client(gateway).generate_stream(QUESTION, max_new_tokens=40, top_n_tokens=3))
    assert "Tokyo" in direct.generated_text
    assert direct.details.finish_reason == "eos_token"
    _same_tokens([r.token for r in streamed], direct.details.tokens)
    assert streamed[-1].token.special and streamed[-1].token.id != 0  # the engine's end token
    for response, tops in zip(streamed, direct.details.top_tokens, strict=True):
        assert response.top_tokens is not None
        assert [t.id for t in response.top_tokens] == [t.id for t in tops]
    last = streamed[-1]
    assert last.generated_text == direct.generated_text
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert last.details.generated_tokens == direct.details.generated_tokens


def test_the_length_limit(engine: RunningServer, gateway: RunningServer) -> None:
    direct = _client(engine).generate(INPUTS, max_new_tokens=3)
    through = _client(gateway).generate(QUESTION, max_new_tokens=3)
    assert through.details.finish_reason == direct.details.finish_reason == "length"
    assert through.details.generated_tokens == 3
    _same_tokens(through.details.tokens, direct.details.tokens)


def test_a_seed_samples_the_same_answer(engine: RunningServer, gateway: RunningServer) -> None:
    sampling = {"do_sample": True, "temperature": 1.5, "top_k": 40, "seed": 1234}
    direct = _client(engine).generate(INPUTS, max_new_tokens=12, **sampling)
    through = [_client(gateway).generate(QUESTION, max_new_tokens=12, **sampling) for _ in "ab"]
    assert through[0].details.seed == 1234
    for answer in through:
        assert answer.generated_text == direct.generated_text
        _same_tokens(answer.details.tokens, direct.details.tokens)


def test_the_engines_limits_are_learned_and_its_refusals_passed_on(
    engine: RunningServer, gateway: RunningServer
) -> None:
    engine_info = httpx.get(f"{engine.url}/info").json()
    info = httpx.get(f"{gateway.url}/info").json()
    assert info["backend"] == "tgi"
    assert info["max_total_tokens"] == engine_info["max_total_tokens"]
    assert info["max_top_n_tokens"] == engine_info["max_top_n_tokens"]
    context = info["max_total_tokens"]
    # the gateway's own check lets it through; the engine counts the prompt and refuses it
    with pytest.raises(text_generation.errors.ValidationError, match=f"must be <= {context}"):
        _client(gateway).generate(QUESTION, max_new_tokens=context - 2)
    too_many = info["max_top_n_tokens"] + 1
    with pytest.raises(text_generation.errors.ValidationError, match="top_n_tokens"):
        _client(gateway).generate(QUESTION, top_n_tokens=too_many)


def test_the_project_client_through_the_gateway(
    engine: RunningServer, gateway: RunningServer
) -> None:
    direct = _client(engine).generate(INPUTS, max_new_tokens=40)
    with h2o_chat.Client(gateway.url) as client:
        answers = [
            client.conversation("tgi").send(
                QUESTION, do_sample=False, repetition_penalty=None, details=True, stop=stop
            )
            for stop in (None, [" Tokyo"])
        ]
    answer, stopped = answers
    assert answer.text == direct.generated_text
    assert [(t.id, t.special) for t in answer.tokens] == [
        (t.id, t.special) for t in direct.details.tokens
    ]
    assert answer.finish_reason == "eos_token"
    assert stopped.finish_reason == "stop_sequence"
    assert stopped.text == direct.generated_text[: direct.generated_text.index(" Tokyo") + 6]


def test_a_closed_answer_closes_the_engines(engine: RunningServer, gateway: RunningServer) -> None:
    body = {
        "inputs": "Write a very long story about a dragon.",
        "parameters": {"max_new_tokens": 900},
    }
    _wait_idle(engine)  # an answer an earlier test closed may still be ending there
    with httpx.stream("POST", f"{gateway.url}/generate_stream", json=body, timeout=TIMEOUT) as r:
        # Kept while the answer is open: a line iterator dropped mid-answer can close it.
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert _running(engine) == 1
    _wait_idle(engine)


def _wait_idle(engine: RunningServer) -> None:
    deadline = time.monotonic() + 30
    while _running(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(engine) == 0


def _running(server: RunningServer) -> int:
    running: int = httpx.get(f"{server.url}/healthz").json()["models"]["smol"]["running"]
    return running
