"""A model's own settings, in-process: its default generation parameters on every route (what a
request gives wins), its context length, and its parallelism and timeout reaching the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from h2o_chat.server.backends.sources import SyntheticSource, UpstreamSource
from h2o_chat.server.config import ModelSettings, ModelSpec, ServerConfig
from h2o_chat.server.runtime import Runtime
from h2o_chat.server.store.base import SQLiteDatabase
from tests.support.asgi import app_client, running_app
from tests.support.h2o import aconverse, anew_conversation, final
from tests.support.lab import upstream

SHORT = ModelSettings(context_length=300, defaults={"max_new_tokens": 7})
STOPPING = ModelSettings(defaults={"stop": [" three"], "max_new_tokens": 50})


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    config = ServerConfig(
        models=(
            ModelSpec("many", SyntheticSource(40), SHORT),
            ModelSpec("echo", SyntheticSource(), STOPPING),
            ModelSpec("plain", SyntheticSource(40)),
        ),
        db=SQLiteDatabase(tmp_path / "h2o-chat.sqlite3"),
    )
    async with running_app(config) as app:
        yield app


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


async def _tgi_tokens(http: httpx.AsyncClient, model: str, **parameters: object) -> int:
    body = {"inputs": "hello", "parameters": {"details": True, **parameters}}
    answer = (await http.post(f"/models/{model}/generate", json=body)).json()
    count: int = answer["details"]["generated_tokens"]
    return count


async def _openai_tokens(http: httpx.AsyncClient, model: str, **fields: object) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **fields}
    count: int = (await http.post("/v1/chat/completions", json=body)).json()["usage"][
        "completion_tokens"
    ]
    return count


async def test_a_default_max_new_tokens_applies_on_every_route(http: httpx.AsyncClient) -> None:
    assert await _tgi_tokens(http, "many") == 7  # not TGI's 20
    assert await _openai_tokens(http, "many") == 7
    conversation = await anew_conversation(http, "many")
    assert final(await aconverse(http, conversation, "hello")).generated_text == " tok" * 7
    # a model without defaults keeps each route's own
    assert await _tgi_tokens(http, "plain") == 20
    assert await _openai_tokens(http, "plain") == 40


async def test_what_a_request_gives_wins_over_the_default(http: httpx.AsyncClient) -> None:
    assert await _tgi_tokens(http, "many", max_new_tokens=3) == 3
    assert await _openai_tokens(http, "many", max_tokens=4) == 4
    conversation = await anew_conversation(http, "many")
    events = await aconverse(http, conversation, "hello", max_new_tokens=2)
    assert final(events).generated_text == " tok" * 2


async def test_a_default_stop_sequence_ends_answers(http: httpx.AsyncClient) -> None:
    body = {"inputs": "one two three four", "parameters": {"details": True}}
    answer = (await http.post("/models/echo/generate", json=body)).json()
    assert answer["details"]["finish_reason"] == "stop_sequence"
    assert answer["generated_text"] == "one two three"
    chat = {"model": "echo", "messages": [{"role": "user", "content": "one two three four"}]}
    choice = (await http.post("/v1/chat/completions", json=chat)).json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two", "stop")
    given = {"inputs": "one two three four", "parameters": {"stop": ["four"]}}
    assert (await http.post("/models/echo/generate", json=given)).json() == {
        "generated_text": "one two three four"
    }


async def test_the_context_length_replaces_the_engines(http: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await http.get("/api/models")).json()}
    assert models["many"]["context_length"] == 300
    assert models["plain"]["context_length"] == 8192  # the synthetic engine's own
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 301}}
    refused = await http.post("/models/many/generate", json=body)
    assert refused.status_code == 422
    assert "over the model's context of 300" in refused.json()["error"]


async def test_parallel_and_timeout_reach_the_upstream(tmp_path: Path) -> None:
    with upstream(tmp_path) as url:
        config = ServerConfig(
            models=(
                ModelSpec("stall", UpstreamSource(url), ModelSettings(parallel=3, timeout=0.5)),
                ModelSpec("ok", UpstreamSource(url)),
            ),
            upstream_timeout=60,
            db=SQLiteDatabase(tmp_path / "h2o-chat.sqlite3"),
        )
        async with running_app(config) as app, app_client(app) as http:
            runtime: Runtime = app.state.runtime
            assert await runtime.loaded()
            assert runtime.models["stall"].backend.parallel == 3
            assert runtime.models["ok"].backend.parallel == config.upstream_parallel
            body = {"inputs": "hello", "parameters": {}}
            answer = await http.post("/models/stall/generate", json=body)
    assert answer.json() == {
        "error": "the upstream model server timed out",
        "error_type": "generation",
    }
