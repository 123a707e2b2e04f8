"""The builtin model (SmolLM2 in llama.cpp) through the H2o protocol, the seed, and the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import requests

from h2o_chat.protocol.payloads import SEED_MODELS, SESSION_COOKIE, settings_form
from h2o_chat.protocol.types import END_OF_TEXT, StreamResponse
from h2o_chat.server.config import BUILTIN_MODEL_ID
from tests.server.conftest import client, converse, error, final, new_conversation
from tests.support.servers import RunningServer

QUESTION = "What is the capital of Japan?"
GREEDY = {"do_sample": False, "max_new_tokens": 40, "details": True}


def test_models_and_health(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        assert http.get("/healthz").status_code == 200
        (model,) = http.get("/api/models").json()
    assert model["id"] == BUILTIN_MODEL_ID
    assert model["backend"] == "builtin"
    assert model["context_length"] == 8192
    assert sorted(model["aliases"]) == sorted(SEED_MODELS.values())


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
        conversation_id = new_conversation(http, SEED_MODELS["falcon-40b"])
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
        events = converse(http, conversation_id, "And of France?", do_sample=False,
                          max_new_tokens=3, details=True)
        saved = http.get(f"/conversation/{conversation_id}").json()
    last = final(events)
    assert len(events) == 3
    assert last.details is not None and last.details.finish_reason == "length"
    assert saved["preprompt"] == "Answer briefly."
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 2


def test_sampling_reports_its_seed(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(http, conversation_id, QUESTION, temperature=0.7, top_k=20, top_p=0.9,
                          repetition_penalty=1.1, seed=42, max_new_tokens=5, details=True)
    details = final(events).details
    assert details is not None and details.seed == 42


def test_prompt_over_the_context_is_a_validation_event(builtin_server: RunningServer) -> None:
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(http, conversation_id, QUESTION, max_new_tokens=8192)
    event = error(events)
    assert event.error_type == "validation"
    assert "must be <= 8192" in event.error


def test_truncate_keeps_the_last_prompt_tokens(builtin_server: RunningServer) -> None:
    long_question = "Please ignore this. " * 3000 + QUESTION  # far over the context
    with client(builtin_server) as http:
        conversation_id = new_conversation(http, BUILTIN_MODEL_ID)
        events = converse(http, conversation_id, long_question, do_sample=False,
                          truncate=60, max_new_tokens=4)
    assert len(events) == 4
    final(events)


def seed_create_completion(base_url: str, model: str, messages: list[dict[str, str]],
                           stream: bool, **kwargs: object) -> Iterator[str]:
    """The seed's 2023 ``_create_completion``, verbatim but for its base URL."""
    from json import loads
    from uuid import uuid4

    from requests import Session

    models = {
        'falcon-7b': 'h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3',
        'falcon-40b': 'h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1',
        'llama-13b': 'h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b'
    }
    conversation = 'instruction: this is a conversation beween, a user and an AI assistant, respond to the latest message, referring to the conversation if needed\n'  # noqa: E501
    for message in messages:
        conversation += '%s: %s\n' % (message['role'], message['content'])  # noqa: UP031
    conversation += 'assistant:'

    client = Session()
    client.headers = {  # type: ignore[assignment]
        'authority': 'gpt-gm.h2o.ai',
        'origin': base_url,
        'referer': base_url + '/',
        'sec-ch-ua': '"Not.A/Brand";v="8", "Chromium";v="114", "Google Chrome";v="114"',
        'sec-ch-ua-mobile': '?0',
        'sec-ch-ua-platform': '"Windows"',
        'sec-fetch-dest': 'document',
        'sec-fetch-mode': 'navigate',
        'sec-fetch-site': 'same-origin',
        'sec-fetch-user': '?1',
        'upgrade-insecure-requests': '1',
        'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36',  # noqa: E501
    }

    client.get(base_url + '/')
    response = client.post(base_url + '/settings', data={
        'ethicsModalAccepted': 'true',
        'shareConversationsWithModelAuthors': 'true',
        'ethicsModalAcceptedAt': '',
        'activeModel': 'h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1',
        'searchEnabled': 'true',
    })

    headers = {
        'authority': 'gpt-gm.h2o.ai',
        'accept': '*/*',
        'accept-language': 'en,fr-FR;q=0.9,fr;q=0.8,es-ES;q=0.7,es;q=0.6,en-US;q=0.5,am;q=0.4,de;q=0.3',  # noqa: E501
        'origin': base_url,
        'referer': base_url + '/',
        'sec-ch-ua': '"Not.A/Brand";v="8", "Chromium";v="114", "Google Chrome";v="114"',
        'sec-ch-ua-mobile': '?0',
        'sec-ch-ua-platform': '"Windows"',
        'sec-fetch-dest': 'empty',
        'sec-fetch-mode': 'cors',
        'sec-fetch-site': 'same-origin',
        'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36',  # noqa: E501
    }

    json_data = {
        'model': models[model]
    }

    response = client.post(base_url + '/conversation',
                            headers=headers, json=json_data)
    conversationId = response.json()['conversationId']  # noqa: N806

    completion = client.post(f'{base_url}/conversation/{conversationId}', stream=True, json = {
        'inputs': conversation,
        'parameters': {
            'temperature': kwargs.get('temperature', 0.4),
            'truncate': kwargs.get('truncate', 2048),
            'max_new_tokens': kwargs.get('max_new_tokens', 1024),
            'do_sample': kwargs.get('do_sample', True),
            'repetition_penalty': kwargs.get('repetition_penalty', 1.2),
            'return_full_text': kwargs.get('return_full_text', False)
        },
        'stream': True,
        'options': {
            'id': kwargs.get('id', str(uuid4())),
            'response_id': kwargs.get('response_id', str(uuid4())),
            'is_retry': False,
            'use_cache': False,
            'web_search_id': ''
        }
    })

    for line in completion.iter_lines():
        if b'data' in line:
            line = loads(line.decode('utf-8').replace('data:', ''))
            token = line['token']['text']

            if token == '<|endoftext|>':
                break
            else:
                yield (token)


def test_the_seed_2023_client_streams_an_answer(builtin_server: RunningServer) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    tokens = list(seed_create_completion(builtin_server.url, "falcon-7b", messages, True,
                                         max_new_tokens=64))
    assert tokens and "".join(tokens).strip()
    assert END_OF_TEXT not in tokens


def test_settings_as_the_seed_posts_them(builtin_server: RunningServer) -> None:
    base = builtin_server.url
    form = settings_form(SEED_MODELS["falcon-40b"])
    session = requests.Session()
    answer = session.post(base + "/settings", data=form, headers={"referer": base + "/"})
    assert answer.status_code == 200
    assert answer.json() == {"type": "redirect", "status": 303, "location": base + "/"}


def test_openai_sdk_non_streaming_with_usage(builtin_server: RunningServer) -> None:
    sdk = openai.OpenAI(base_url=builtin_server.url + "/v1", api_key="unused")
    completion = sdk.chat.completions.create(
        model=BUILTIN_MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=40,
    )
    assert "Tokyo" in (completion.choices[0].message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_sdk_streaming_with_usage(builtin_server: RunningServer) -> None:
    sdk = openai.OpenAI(base_url=builtin_server.url + "/v1", api_key="unused")
    stream = sdk.chat.completions.create(
        model=SEED_MODELS["llama-13b"], messages=[{"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=40, stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Tokyo" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert json.loads(chunks[0].model_dump_json())["model"] == SEED_MODELS["llama-13b"]
