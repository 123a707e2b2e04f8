"""An OpenAI-compatible upstream: the same GGUF served by llama.cpp's server, behind our server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from h2o_chat import weights
from tests.support.engines import llama_server as llama_cpp_server
from tests.support.h2o import client, converse, error, final, new_conversation
from tests.support.servers import RunningServer, free_port, h2o_server


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
