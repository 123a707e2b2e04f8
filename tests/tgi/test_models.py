"""Real models through TGI's routes: the built-in model in-process, and an upstream engine."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import text_generation
from huggingface_hub import InferenceClient

from tests.support.servers import RunningServer
from tests.tgi.servers import serve, stream, upstream_engine

QUESTION = "What is the capital of Japan?"
TIMEOUT = 120


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """h2o-chat serving an upstream engine's SmolLM2 as ``up`` (the default TGI model)."""
    with (
        upstream_engine(tmp_path_factory.mktemp("engine")) as base_url,
        serve(tmp_path_factory.mktemp("upstream"), "--model", f"up={base_url}#smol") as server,
    ):
        yield server


def test_builtin_through_text_generation(builtin: RunningServer) -> None:
    client = text_generation.Client(builtin.url, timeout=TIMEOUT)
    response = client.generate(QUESTION, max_new_tokens=30, decoder_input_details=True)
    assert "Tokyo" in response.generated_text
    details = response.details
    assert details.finish_reason == "eos_token"
    assert details.generated_tokens == len(details.tokens)
    assert details.tokens[-1].special and not any(t.special for t in details.tokens[:-1])
    assert all(t.logprob is not None and t.logprob <= 0 for t in details.tokens)
    assert "".join(t.text for t in details.prefill) == QUESTION
    streamed = list(client.generate_stream(QUESTION, max_new_tokens=30))
    assert [r.token.id for r in streamed] == [t.id for t in details.tokens]  # greedy: the same


def test_builtin_tokenize_ids_equal_the_ids_the_stream_reports(builtin: RunningServer) -> None:
    _, events = stream(builtin.url, "/generate_stream", {"inputs": QUESTION})
    answer = events[-1]["generated_text"]
    tokens = httpx.post(f"{builtin.url}/tokenize", json={"inputs": answer}, timeout=TIMEOUT)
    assert [t["id"] for t in tokens.json()] == [e["token"]["id"] for e in events[:-1]]
    assert "".join(t["text"] for t in tokens.json()) == answer


def test_builtin_top_n_tokens(builtin: RunningServer) -> None:
    client = text_generation.Client(f"{builtin.url}/models/smol", timeout=TIMEOUT)
    responses = list(client.generate_stream(QUESTION, max_new_tokens=5, top_n_tokens=5))
    for response in responses:
        assert response.top_tokens is not None and len(response.top_tokens) == 5
        assert response.top_tokens[0].id == response.token.id  # greedy takes the likeliest
        logprobs = [t.logprob or 0.0 for t in response.top_tokens]
        assert logprobs == sorted(logprobs, reverse=True)
    too_many = httpx.post(
        f"{builtin.url}/generate", json={"inputs": "hi", "parameters": {"top_n_tokens": 6}}
    )
    assert too_many.status_code == 422 and "from 0 to 5" in too_many.json()["error"]


def test_upstream_through_the_tgi_routes(upstream: RunningServer) -> None:
    client = text_generation.Client(upstream.url, timeout=TIMEOUT)
    response = client.generate(QUESTION, max_new_tokens=30)
    assert "Tokyo" in response.generated_text
    assert response.details.finish_reason == "eos_token"
    short = client.generate(QUESTION, max_new_tokens=3)
    assert short.details.finish_reason == "length"
    hub = InferenceClient(base_url=f"{upstream.url}/models/up", timeout=TIMEOUT)
    outputs = list(hub.text_generation(QUESTION, max_new_tokens=30, stream=True, details=True))
    assert outputs[-1].generated_text == response.generated_text
    assert [o.index for o in outputs] == list(range(1, len(outputs) + 1))


def test_upstream_refuses_what_it_cannot_do(upstream: RunningServer) -> None:
    tokenize = httpx.post(f"{upstream.url}/tokenize", json={"inputs": "hi"})
    assert tokenize.status_code == 404
    assert tokenize.json()["error_type"] == "no fast tokenizer"
    for parameters, words in (
        ({"top_n_tokens": 21}, "top_n_tokens"),  # OpenAI's top_logprobs stop at 20
        ({"details": True, "decoder_input_details": True}, "decoder_input_details"),
    ):
        body = {"inputs": "hi", "parameters": parameters}
        answer = httpx.post(f"{upstream.url}/generate", json=body, timeout=TIMEOUT)
        assert answer.status_code == 422 and words in answer.json()["error"]
