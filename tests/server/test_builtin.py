"""The builtin model (SmolLM2, llama.cpp) via the H2o protocol, the seed and the openai SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import requests

from bench import seed
from h2o_chat.protocol.payloads import H2O_2023_MODELS, SESSION_COOKIE, settings_form
from h2o_chat.protocol.types import END_OF_TEXT, StreamResponse
from h2o_chat.server.backends.llamacpp_settings import DEFAULT_CTX_SIZE
from h2o_chat.server.config import BUILTIN_MODEL_ID
from tests.support.h2o import client, converse, error, final, new_conversation
from tests.support.servers import RunningServer

QUESTION = "What is the capital of Japan?"
GREEDY = {"do_sample": False, "max_new_tokens": 40, "details": True}


def test_models_and_health(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        assert http.get("/healthz").status_code == 200
        (model,) = http.get("/api/models").json()
    assert model["id"] == BUILTIN_MODEL_ID
    assert model["backend"] == "builtin"
    assert model["context_length"] == DEFAULT_CTX_SIZE
    assert sorted(model["aliases"]) == sorted(H2O_2023_MODELS.values())


def test_index_sets_the_session_cookie(builtin_server: RunningServer) -> None:
    response = httpx.get(builtin_server.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("Path=/", "Expires=", "HttpOnly", "SameSite=Lax"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http


def test_greedy_answer_streams_with_protocol_events(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        http.get("/")
        conversation_id = new_conversation(http, H2O_2023_MODELS["falcon-40b"])
        events = converse(http, conversation_id, QUESTION, **GREEDY)
        saved = http.get(f"/conversation/{conversation_id}").json()
    last = final(events)
    assert "Tokyo" in (last.generated_text or "")
    assert last.token.text == END_OF_TEXT and last.token.special
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert last.details.generated_tokens == len(events)
    assert last.details.seed is None  # greedy
    tokens = [e.token for e in events if isinstance(e, StreamResponse)]
    assert all(t.logprob is not None and t.logprob <= 0 for t in tokens)
    assert all(t.id > 0 for t in tokens)
    assert "".join(t.text for t in tokens[:-1]) == last.generated_text
    assert saved["model"] == BUILTIN_MODEL_ID
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["messages"][1]["content"] == last.generated_text


def test_follow_up_turn_and_max_new_tokens(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID, preprompt="Answer briefly.")
        converse(http, conversation_id, QUESTION, **GREEDY)
        events = converse(
            http, conversation_id, "And of France?", do_sample=False, max_new_tokens=3, details=True
        )
        saved = http.get(f"/conversation/{conversation_id}").json()
    last = final(events)
    assert len(events) == 3
    assert last.details is not None and last.details.finish_reason == "length"
    assert saved["preprompt"] == "Answer briefly."
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 2


def test_sampling_reports_its_seed(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(
            http,
            conversation_id,
            QUESTION,
            temperature=0.7,
            top_k=20,
            top_p=0.9,
            repetition_penalty=1.1,
            seed=42,
            max_new_tokens=5,
            details=True,
        )
    details = final(events).details
    assert details is not None and details.seed == 42


def test_prompt_over_the_context_is_a_validation_event(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(http, conversation_id, QUESTION, max_new_tokens=DEFAULT_CTX_SIZE)
    event = error(events)
    assert event.error_type == "validation"
    assert f"must be <= {DEFAULT_CTX_SIZE}" in event.error


def test_truncate_keeps_the_last_prompt_tokens(builtin_server: RunningServer) -> None:
    long_question = "Please ignore this. " * 3000 + QUESTION  # far over the context
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(
            http, conversation_id, long_question, do_sample=False, truncate=60, max_new_tokens=4
        )
    assert len(events) == 4
    final(events)


def test_the_seed_2023_client_streams_an_answer(
    builtin_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's own code (bench/seed.py: verbatim but for its base URL) on a default server.

    Its headers still name gpt-gm.h2o.ai, so its /settings post meets the referer check;
    the seed never looked at that answer, and its conversation works all the same.
    """
    monkeypatch.setattr(seed, "url", builtin_server.url)
    messages = [{"role": "user", "content": QUESTION}]
    tokens = list(seed._create_completion("falcon-7b", messages, True, max_new_tokens=64))
    assert tokens and "".join(tokens).strip()
    assert END_OF_TEXT not in tokens


def test_settings_as_the_seed_posts_them(builtin_server: RunningServer) -> None:
    base = builtin_server.url
    form = settings_form(H2O_2023_MODELS["falcon-40b"])
    session = requests.Session()
    answer = session.post(base + "/settings", data=form, headers={"referer": base + "/"})
    assert answer.status_code == 200
    assert answer.json() == {"type": "redirect", "status": 303, "location": base + "/"}


def test_openai_sdk_non_streaming_with_usage(builtin_server: RunningServer) -> None:
    sdk = openai.OpenAI(base_url=builtin_server.url + "/v1", api_key="unused")
    completion = sdk.chat.completions.create(
        model=BUILTIN_MODEL_ID,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
    )
    assert "Tokyo" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_sdk_streaming_with_usage(builtin_server: RunningServer) -> None:
    sdk = openai.OpenAI(base_url=builtin_server.url + "/v1", api_key="unused")
    stream = sdk.chat.completions.create(
        model=H2O_2023_MODELS["llama-13b"],
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Tokyo" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert json.loads(chunks[0].model_dump_json())["model"] == H2O_2023_MODELS["llama-13b"]
