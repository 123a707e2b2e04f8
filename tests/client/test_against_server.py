"""The client, async client and provider against the project's own server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

import h2o_chat
import h2o_chat.provider as provider
from h2o_chat import errors
from h2o_chat.protocol.payloads import H2O_2023_MODELS
from h2o_chat.protocol.prompt import flatten_messages
from tests.support.servers import RunningServer, h2o_server

FALCON = H2O_2023_MODELS["falcon-7b"]
QUESTION = [{"role": "user", "content": "What is the capital of Japan?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The builtin model, plus the falcon-7b id served by the echoing synthetic engine."""
    args = ["--model", "SmolLM2-135M-Instruct=builtin", "--model", f"{FALCON}=synthetic"]
    with h2o_server(tmp_path_factory.mktemp("server"), *args) as running:
        yield running


def test_provider_streams_from_the_server(server: RunningServer) -> None:
    tokens = list(provider._create_completion("falcon-7b", QUESTION, True, base_url=server.url))
    assert "".join(tokens) == " ".join(flatten_messages(QUESTION).split())
    assert len(tokens) == len(flatten_messages(QUESTION).split())
    whole = list(provider._create_completion("falcon-7b", QUESTION, False, base_url=server.url))
    assert whole == ["".join(tokens)]


def test_builtin_model_answers_through_a_conversation(server: RunningServer) -> None:
    with h2o_chat.Client(server.url) as client:
        conversation = client.conversation("SmolLM2-135M-Instruct")
        completion = conversation.send(
            "What is the capital of Japan?", do_sample=False, details=True, max_new_tokens=40
        )
    assert "Tokyo" in completion.text
    assert completion.finish_reason in ("eos_token", "length")
    assert all(t.logprob is not None and t.logprob <= 0 for t in completion.tokens)
    assert len({t.id for t in completion.tokens}) > 1


def test_sync_and_async_conversations_live_on_the_server(server: RunningServer) -> None:
    with h2o_chat.Client(server.url) as client:
        conversation = client.conversation("falcon-7b")
        assert conversation.send("alpha beta").text == "alpha beta"
        assert [e.token.text for e in conversation.stream("gamma delta")][:2] == ["gamma", " delta"]
        conversation_id = conversation.id

    async def follow_up() -> str:
        async with h2o_chat.AsyncClient(server.url) as client:
            # Another client has another session: the conversation is not found there.
            stranger = client.conversation("falcon-7b", id=conversation_id)
            with pytest.raises(errors.NotFoundError):
                await stranger.send("hello?")
            own = client.conversation("falcon-7b")
            await own.send("one")
            return (await own.send("two three")).text

    assert asyncio.run(follow_up()) == "two three"


def test_server_keeps_the_history_of_follow_up_turns(server: RunningServer) -> None:
    with h2o_chat.Client(server.url) as client:
        conversation = client.conversation("falcon-7b", system="Be brief.")
        conversation.send("first turn")
        conversation.send("second turn")
        cookies = dict(client._http.cookies)
    stored = httpx.get(f"{server.url}/conversation/{conversation.id}", cookies=cookies).json()
    contents = [(m["role"], m["content"]) for m in stored["messages"]]
    assert contents == [
        ("user", "first turn"),
        ("assistant", "first turn"),
        ("user", "second turn"),
        ("assistant", "second turn"),
    ]
    assert conversation.messages == [{"role": r, "content": c} for r, c in contents]


def test_unknown_model_names_the_served_ones(server: RunningServer) -> None:
    with h2o_chat.Client(server.url) as client, pytest.raises(errors.UnknownModelError) as caught:
        client.chat("no-such-model", QUESTION)
    assert "SmolLM2-135M-Instruct" in str(caught.value)


def test_models_lists_what_the_server_serves(server: RunningServer) -> None:
    with h2o_chat.Client(server.url) as client:
        models = {m.id: m for m in client.models()}
    assert set(models) == {"SmolLM2-135M-Instruct", FALCON}
    assert models["SmolLM2-135M-Instruct"].backend == "builtin"
    assert models["SmolLM2-135M-Instruct"].context_length > 0
