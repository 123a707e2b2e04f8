"""The library starts the built-in server on request (:mod:`h2o_chat.local`)."""

from __future__ import annotations

import pytest

from h2o_chat import (
    AsyncClient,
    Client,
    ConnectError,
    local_async_client,
    local_client,
    local_server,
)

JAPAN = [{"role": "user", "content": "What is the capital of Japan?"}]
SEED_IDS = (
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
    "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
)


def test_local_client_serves_the_builtin_model_and_stops_with_the_block() -> None:
    with local_client(max_retries=0) as client:
        url = client.base_url
        models = client.models()
        assert [m.id for m in models] == ["SmolLM2-135M-Instruct"]
        assert set(models[0].aliases) == set(SEED_IDS)
        assert "Tokyo" in client.chat("falcon-7b", JAPAN, do_sample=False).text
    assert url.startswith("http://127.0.0.1:")
    with Client(url, max_retries=0) as after, pytest.raises(ConnectError):
        after.models()


def test_local_server_yields_a_url_any_client_can_use() -> None:
    with local_server() as url, Client(url) as client:
        chat = client.conversation("falcon-40b")
        assert "Tokyo" in chat.send(JAPAN[0]["content"], do_sample=False).text
        assert "Paris" in chat.send("And of France?", do_sample=False).text


async def test_local_async_client_answers() -> None:
    async with local_async_client() as client:
        assert isinstance(client, AsyncClient)
        answer = await client.chat("llama-13b", JAPAN, do_sample=False)
        assert "Tokyo" in answer.text
