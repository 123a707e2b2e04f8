"""An OpenAI-compatible upstream: the same GGUF served by llama.cpp's server, behind our server;
and an upstream that refuses ``logprobs``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import text_generation
import text_generation.errors

import h2o_chat
from h2o_chat import weights
from tests.support.engines import llama_server as llama_cpp_server
from tests.support.h2o import client, converse, error, final, new_conversation
from tests.support.lab import upstream as faulty_upstream
from tests.support.servers import RunningServer, free_port, h2o_server

QUESTION = "What is the capital of Japan?"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with llama_cpp_server(weights.ensure(), tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, llama_server: RunningServer
) -> Iterator[RunningServer]:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    args = (
        *("--model", f"upstream={llama_server.url}/v1#smol"),
        *("--model", f"down={nowhere}"),
        *("--upstream-timeout", "30"),
    )
    with h2o_server(tmp_path_factory.mktemp("server"), *args) as server:
        yield server


def test_models_list_the_upstream(server: RunningServer) -> None:
    models = {m["id"]: m for m in httpx.get(server.url + "/api/models").json()}
    assert models["upstream"]["backend"] == "openai"
    assert models["down"]["backend"] == "openai"


def test_streamed_answer_through_the_h2o_protocol(server: RunningServer) -> None:
    with client(server) as http:
        conversation_id = new_conversation(http, "upstream")
        events = converse(
            http,
            conversation_id,
            "What is the capital of Japan?",
            do_sample=False,
            max_new_tokens=40,
            details=True,
        )
        saved = http.get(f"/conversation/{conversation_id}").json()["messages"]
    last = final(events)
    assert len(events) > 2
    assert "Tokyo" in (last.generated_text or "")
    assert last.token.text == "<|endoftext|>" and last.token.special
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert saved[-1] == {**saved[-1], "role": "assistant", "content": last.generated_text}


def test_upstream_length_limit(server: RunningServer) -> None:
    with client(server) as http:
        conversation_id = new_conversation(http, "upstream")
        events = converse(
            http,
            conversation_id,
            "Count from one to fifty.",
            do_sample=False,
            max_new_tokens=3,
            details=True,
        )
    last = final(events)
    assert last.details is not None and last.details.finish_reason == "length"


def test_unreachable_upstream_is_an_error_event(server: RunningServer) -> None:
    with client(server) as http:
        conversation_id = new_conversation(http, "down")
        event = error(converse(http, conversation_id, "hello"))
    assert event.error_type == "generation"
    assert "unreachable" in event.error


def test_ids_and_logprobs_are_the_engines(
    server: RunningServer, llama_server: RunningServer
) -> None:
    with h2o_chat.Client(server.url, timeout=120) as h2o:
        answer = h2o.conversation("upstream").send(
            QUESTION, do_sample=False, repetition_penalty=None, max_new_tokens=40, details=True
        )
    tokenized = httpx.post(f"{llama_server.url}/tokenize", json={"content": answer.text})
    *tokens, end = answer.tokens
    assert "Tokyo" in answer.text and answer.finish_reason == "eos_token"
    assert [t.id for t in tokens] == tokenized.json()["tokens"]
    assert all(t.id > 0 and t.logprob is not None and t.logprob <= 0 for t in tokens)
    assert (end.id, end.logprob, end.special) == (0, None, True)  # llama.cpp lists no end token


def test_top_tokens_from_the_engine(server: RunningServer) -> None:
    tgi = text_generation.Client(f"{server.url}/models/upstream", timeout=120)
    responses = list(tgi.generate_stream(QUESTION, max_new_tokens=5, top_n_tokens=3))
    assert len(responses) == 5
    for response in responses:
        assert response.top_tokens is not None and len(response.top_tokens) == 3
        assert response.top_tokens[0].id == response.token.id  # greedy takes the likeliest
        logprobs = [t.logprob or 0.0 for t in response.top_tokens]
        assert logprobs == sorted(logprobs, reverse=True)
    with pytest.raises(text_generation.errors.ValidationError, match="from 0 to 20"):
        tgi.generate(QUESTION, top_n_tokens=21)  # OpenAI's cap on top_logprobs


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """An upstream that answers 400 to any request asking for logprobs, behind our server."""
    with (
        faulty_upstream(tmp_path_factory.mktemp("strict-upstream")) as url,
        h2o_server(
            tmp_path_factory.mktemp("strict"), "--model", f"strict={url}#no-logprobs"
        ) as server,
    ):
        yield server


def test_an_engine_that_refuses_logprobs_is_asked_without_them(strict: RunningServer) -> None:
    with h2o_chat.Client(strict.url, max_retries=0) as h2o:
        answers = [h2o.conversation("strict").send("hi", details=True) for _ in range(3)]
    assert [a.text for a in answers] == ["a b c"] * 3
    assert {(t.id, t.logprob) for a in answers for t in a.tokens} == {(0, None)}
    assert strict.log().count("refuses logprobs") == 1  # learned once, then not asked
    refused = httpx.post(
        f"{strict.url}/models/strict/generate",
        json={"inputs": "hi", "parameters": {"top_n_tokens": 1}},
    )
    assert refused.status_code == 422 and "from 0 to 0" in refused.json()["error"]


def test_the_openai_route_does_not_ask_the_engine_for_logprobs(tmp_path: Path) -> None:
    # /v1 shows text only, so the engine is spared each token's logprob: the refusing engine
    # is never asked for them until a route that shows tokens is used.
    for folder in ("upstream", "server"):
        (tmp_path / folder).mkdir()
    with (
        faulty_upstream(tmp_path / "upstream") as url,
        h2o_server(tmp_path / "server", "--model", f"strict={url}#no-logprobs") as server,
    ):
        body = {"model": "strict", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
        assert answer.json()["choices"][0]["message"]["content"] == "a b c"
        assert "refuses logprobs" not in server.log()
        with h2o_chat.Client(server.url, max_retries=0) as h2o:
            assert h2o.conversation("strict").send("hi").text == "a b c"
        assert server.log().count("refuses logprobs") == 1
