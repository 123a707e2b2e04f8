"""The OpenAI front door with the official SDK, in-process: auth, models, errors, stop sequences."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import openai
import pytest
from starlette.applications import Starlette

from h2o_chat.server.config import ServerConfig, parse_model_spec
from h2o_chat.server.store.base import SQLiteDatabase
from tests.support.asgi import BASE_URL, app_client, running_app

KEY = "sk-test-key"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    config = ServerConfig(
        models=(parse_model_spec("echo=synthetic"), parse_model_spec("five=synthetic:5")),
        aliases={"parrot": "echo"},
        api_key=KEY,
        db=SQLiteDatabase(tmp_path / "h2o-chat.sqlite3"),
    )
    async with running_app(config) as app:
        yield app


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


@contextlib.asynccontextmanager
async def sdk_of(app: Starlette, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK calling ``app`` in-process, through its own HTTP library (httpx2)."""
    transport = httpx2.ASGITransport(app=app)
    async with (
        httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as http,
        openai.AsyncOpenAI(
            base_url=BASE_URL + "/v1", api_key=api_key, max_retries=0, http_client=http
        ) as sdk,
    ):
        yield sdk


@pytest.fixture
async def sdk(app: Starlette) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk_of(app, KEY) as sdk:
        yield sdk


async def test_a_wrong_or_missing_key_is_401(app: Starlette, http: httpx.AsyncClient) -> None:
    async with sdk_of(app, "nope") as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.models.list()
    assert caught.value.status_code == 401
    bare = await http.post("/v1/chat/completions", json={})
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"
    assert (await http.get("/api/models")).status_code == 200  # the H2o side is open


async def test_models_include_aliases(sdk: openai.AsyncOpenAI) -> None:
    assert {m.id async for m in sdk.models.list()} == {"echo", "five", "parrot"}


async def test_non_streaming_echo_with_usage(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="parrot",
        messages=[
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "one two three"},
        ],
    )
    assert completion.model == "parrot"
    assert completion.choices[0].message.content == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 3)


async def test_max_tokens_is_length(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="five",
        messages=[{"role": "user", "content": "go"}],
        max_tokens=2,
        seed=7,
    )
    assert completion.choices[0].message.content == " tok tok"
    assert completion.choices[0].finish_reason == "length"


async def test_streamed_stop_sequence_is_never_sent(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "alpha beta gamma delta"}],
        stop=[" gam"],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "role"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"n": 2}, "n = 1"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": 100_000}, "context"),
    ],
)
async def test_bad_requests_are_400_in_openai_shape(
    sdk: openai.AsyncOpenAI, fields: dict[str, object], named: str
) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(**body)  # type: ignore[call-overload]
    assert named in caught.value.message


async def test_unknown_model_is_404(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="echo"):
        await sdk.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "hi"}]
        )
