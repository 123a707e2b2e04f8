"""TGI's clients from PyPI, unchanged, against the real server: text-generation's ``Client`` and
``AsyncClient``, huggingface_hub's ``InferenceClient`` and the openai SDK."""

from __future__ import annotations

import pytest
import text_generation
import text_generation.errors
from huggingface_hub import InferenceClient, TextGenerationInputGrammarType
from huggingface_hub.errors import ValidationError as HubValidationError
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.support.servers import RunningServer
from tests.tgi.servers import occupied

TIMEOUT = 60


def test_text_generation_client_generate_with_details(lab: RunningServer) -> None:
    client = text_generation.Client(lab.url, timeout=TIMEOUT)
    response = client.generate("the quick brown fox", decoder_input_details=True)
    assert response.generated_text == "the quick brown fox"
    details = response.details
    assert details.finish_reason == "eos_token"
    assert details.generated_tokens == 5  # four words and the end token
    assert details.seed is None  # greedy: TGI's default
    assert [t.text for t in details.tokens] == ["the", " quick", " brown", " fox", "<|endoftext|>"]
    assert [t.special for t in details.tokens] == [False] * 4 + [True]
    assert [(t.id, t.text) for t in details.prefill] == [
        (1, "the"),
        (2, " quick"),
        (3, " brown"),
        (4, " fox"),
    ]


def test_text_generation_client_stops_at_its_max_new_tokens(lab: RunningServer) -> None:
    client = text_generation.Client(f"{lab.url}/models/many", timeout=TIMEOUT)
    response = client.generate("go", max_new_tokens=7, stop_sequences=["never"])
    assert response.details.finish_reason == "length"
    assert response.details.generated_tokens == 7
    assert response.generated_text == " tok" * 7


def test_text_generation_client_generate_stream(lab: RunningServer) -> None:
    client = text_generation.Client(lab.url, timeout=TIMEOUT)
    responses = list(client.generate_stream("hello streaming world", top_n_tokens=2))
    assert "".join(r.token.text for r in responses if not r.token.special) == (
        "hello streaming world"
    )
    last = responses[-1]
    assert last.generated_text == "hello streaming world"
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert all(r.generated_text is None and r.details is None for r in responses[:-1])
    assert all(r.top_tokens is not None and len(r.top_tokens) == 2 for r in responses)
    assert [r.top_tokens[0].id for r in responses if r.top_tokens] == [
        r.token.id for r in responses
    ]


async def test_text_generation_async_client(lab: RunningServer) -> None:
    client = text_generation.AsyncClient(f"{lab.url}/models/five", timeout=TIMEOUT)
    response = await client.generate("anything", max_new_tokens=3)
    assert response.generated_text == " tok tok tok"
    assert response.details.finish_reason == "length"
    texts = [r.token.text async for r in client.generate_stream("anything")]
    assert texts == [" tok"] * 5 + ["<|endoftext|>"]


def test_text_generation_validation_error_is_typed(lab: RunningServer) -> None:
    client = text_generation.Client(lab.url, timeout=TIMEOUT)
    with pytest.raises(text_generation.errors.ValidationError, match="best_of"):
        client.generate("hi", do_sample=True, best_of=2)
    with pytest.raises(text_generation.errors.ValidationError, match="frequency_penalty"):
        list(client.generate_stream("hi", frequency_penalty=0.5))


async def test_text_generation_async_validation_error_is_typed(lab: RunningServer) -> None:
    client = text_generation.AsyncClient(lab.url, timeout=TIMEOUT)
    with pytest.raises(text_generation.errors.ValidationError, match="max_new_tokens"):
        await client.generate("hi", max_new_tokens=10**6)
    with pytest.raises(text_generation.errors.ValidationError, match="top_n_tokens"):
        [r async for r in client.generate_stream("hi", top_n_tokens=6)]


def test_text_generation_overloaded_error_is_typed(busy: RunningServer) -> None:
    client = text_generation.Client(busy.url, timeout=TIMEOUT)
    with occupied(busy):
        with pytest.raises(text_generation.errors.OverloadedError):
            client.generate("one more")
        with pytest.raises(text_generation.errors.OverloadedError):
            list(client.generate_stream("one more"))


async def test_text_generation_async_overloaded_error_is_typed(busy: RunningServer) -> None:
    client = text_generation.AsyncClient(busy.url, timeout=TIMEOUT)
    with occupied(busy):
        with pytest.raises(text_generation.errors.OverloadedError):
            await client.generate("one more")
        with pytest.raises(text_generation.errors.OverloadedError):
            [r async for r in client.generate_stream("one more")]


def test_inference_client_text_generation_stream_with_details(lab: RunningServer) -> None:
    client = InferenceClient(base_url=lab.url, timeout=TIMEOUT)
    outputs = list(client.text_generation("stream me please", stream=True, details=True))
    assert [o.index for o in outputs] == [1, 2, 3, 4]
    assert "".join(o.token.text for o in outputs if not o.token.special) == "stream me please"
    last = outputs[-1]
    assert last.generated_text == "stream me please"
    assert last.details is not None
    assert last.details.finish_reason == "eos_token"
    assert last.details.generated_tokens == 4
    assert last.details.input_length == 3


def test_inference_client_text_generation(lab: RunningServer) -> None:
    client = InferenceClient(base_url=lab.url, timeout=TIMEOUT)
    assert client.text_generation("plain text answer") == "plain text answer"
    output = client.text_generation("with details", details=True, max_new_tokens=1)
    assert output.generated_text == "with"
    assert output.details is not None and output.details.finish_reason == "length"
    assert [t.text for t in output.details.tokens] == ["with"]
    texts = list(client.text_generation("one by one", stream=True))
    assert texts == ["one", " by", " one", "<|endoftext|>"]  # TGI's end token comes too
    with pytest.raises(HubValidationError, match="grammar"):
        client.text_generation(
            "hi", grammar=TextGenerationInputGrammarType(type="regex", value="[a-z]+")
        )


def test_inference_client_per_model_base_url(lab: RunningServer) -> None:
    for base, expected in (("five", " tok" * 5), ("team/echo", "aliased")):
        client = InferenceClient(base_url=f"{lab.url}/models/{base}", timeout=TIMEOUT)
        assert client.text_generation("aliased", max_new_tokens=10) == expected


def test_inference_client_chat_completion_through_v1(lab: RunningServer) -> None:
    question = [{"role": "user", "content": "chat through v1"}]
    root = InferenceClient(base_url=lab.url, timeout=TIMEOUT)
    reply = root.chat_completion(question, model="echo")
    assert reply.choices[0].message.content == "chat through v1"
    chunks = root.chat_completion(question, model="five", stream=True, max_tokens=2)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == " tok tok"
    per_model = InferenceClient(base_url=f"{lab.url}/models/echo", timeout=TIMEOUT)
    reply = per_model.chat_completion(question)  # sends model "dummy": the prefix decides
    assert reply.choices[0].message.content == "chat through v1"


def test_openai_sdk_unchanged(lab: RunningServer) -> None:
    client = OpenAI(base_url=f"{lab.url}/v1", api_key="unused", timeout=TIMEOUT)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "openai still works"}]
    reply = client.chat.completions.create(model="echo", messages=messages)
    assert reply.choices[0].message.content == "openai still works"
    stream = client.chat.completions.create(model="echo", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "openai still works"
    )
