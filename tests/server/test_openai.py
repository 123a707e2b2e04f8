"""The OpenAI front door with the official SDK: auth, models, errors, stop sequences."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.servers import RunningServer, h2o_server

KEY = "sk-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    args = (
        *("--model", "echo=synthetic"),
        *("--model", "five=synthetic:5"),
        *("--alias", "parrot=echo"),
        *("--api-key", KEY),
    )
    with h2o_server(tmp_path_factory.mktemp("server"), *args) as server:
        yield server


@pytest.fixture
def sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def test_a_wrong_or_missing_key_is_401(server: RunningServer) -> None:
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.models.list()
    assert caught.value.status_code == 401
    bare = httpx.post(server.url + "/v1/chat/completions", json={})
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/api/models").status_code == 200  # the H2o side is open


def test_models_include_aliases(sdk: openai.OpenAI) -> None:
    assert {m.id for m in sdk.models.list()} == {"echo", "five", "parrot"}


def test_non_streaming_echo_with_usage(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
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


def test_max_tokens_is_length(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="five",
        messages=[{"role": "user", "content": "go"}],
        max_tokens=2,
        seed=7,
    )
    assert completion.choices[0].message.content == " tok tok"
    assert completion.choices[0].finish_reason == "length"


def test_streamed_stop_sequence_is_never_sent(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "alpha beta gamma delta"}],
        stop=[" gam"],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
    )
    chunks = list(stream)
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
def test_bad_requests_are_400_in_openai_shape(
    sdk: openai.OpenAI, fields: dict[str, object], named: str
) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(**body)  # type: ignore[call-overload]
    assert named in caught.value.message


def test_unknown_model_is_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="echo"):
        sdk.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
