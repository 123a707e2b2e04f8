"""The H2o routes' edge cases in-process: sessions, gates, errors, stream semantics.

The app runs in this process with synthetic engines (:mod:`tests.support.asgi`); what needs
a server process (uvicorn's proxy headers, signals, live streams) is in test_lifecycle.py
and test_scheduling.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from h2o_chat.protocol.types import END_OF_TEXT, StreamResponse
from h2o_chat.server.config import ServerConfig, parse_model_spec
from h2o_chat.server.store.base import SQLiteDatabase
from tests.support.asgi import BASE_URL, app_client, running_app
from tests.support.h2o import aconverse, anew_conversation, error, final

MODELS = (
    "echo=synthetic",
    "five=synthetic:5",
    "transcript=python:tests.support.backends:transcript",
    "broken=python:tests.support.backends:failing",
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Starlette]:
    config = ServerConfig(
        models=tuple(map(parse_model_spec, MODELS)),
        aliases={"parrot": "echo"},
        max_body_bytes=4096,
        db=SQLiteDatabase(tmp_path / "h2o-chat.sqlite3"),
    )
    async with running_app(config) as app:
        yield app


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as http:
        yield http


async def test_any_request_mints_a_session(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/models")
    assert "hf-chat=" in response.headers["set-cookie"]
    again = await http.get("/api/models")  # the jar now holds the cookie
    assert "set-cookie" not in again.headers


async def test_conversation_ids_are_24_hex(http: httpx.AsyncClient) -> None:
    ids = {await anew_conversation(http, "echo") for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


async def test_session_isolation_on_every_conversation_route(
    http: httpx.AsyncClient, app: Starlette
) -> None:
    conversation_id = await anew_conversation(http, "echo")
    path = f"/conversation/{conversation_id}"
    body = {"inputs": "hello"}
    async with app_client(app) as stranger:
        stranger.cookies.set("hf-chat", str(uuid.uuid4()))
        answers = [
            await stranger.get(path),
            await stranger.post(path, json=body),
            await stranger.post(path + "/stop-generating"),
            await stranger.delete(path),
        ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json() == {"error": "Conversation not found"}
    assert (await http.get(path)).status_code == 200  # still there for its owner


@pytest.mark.parametrize("bad_id", ["nothex", "0" * 23, "g" * 24, "0" * 25, "A" * 24])
async def test_malformed_and_unknown_ids_are_404(http: httpx.AsyncClient, bad_id: str) -> None:
    assert (await http.get(f"/conversation/{bad_id}")).status_code == 404
    assert (await http.post(f"/conversation/{bad_id}", json={"inputs": "x"})).status_code == 404
    assert (await http.get(f"/conversation/{'0' * 24}")).status_code == 404


async def test_delete_conversation(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "echo")
    assert (await http.delete(f"/conversation/{conversation_id}")).status_code == 200
    assert (await http.get(f"/conversation/{conversation_id}")).status_code == 404
    assert (await http.delete(f"/conversation/{conversation_id}")).status_code == 404


async def test_referer_check_on_form_posts(http: httpx.AsyncClient) -> None:
    form = {"activeModel": "echo"}
    missing = await http.post("/settings", data=form)
    assert missing.status_code == 403
    assert missing.json() == {"error": "Non-JSON form requests need to have a referer"}
    foreign = await http.post("/settings", data=form, headers={"referer": "https://evil.example/"})
    assert foreign.status_code == 403
    assert foreign.json() == {"error": "Invalid referer for POST request"}
    as_text = await http.post(
        "/conversation", content=b'{"model": "echo"}', headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 403
    own = await http.post("/settings", data=form, headers={"referer": BASE_URL + "/"})
    assert own.status_code == 200


async def test_settings_redirects_303_for_html_else_json(http: httpx.AsyncClient) -> None:
    referer = BASE_URL + "/chat"
    form = {"ethicsModalAccepted": "false", "activeModel": "parrot"}
    html = await http.post(
        "/settings", data=form, headers={"referer": referer, "accept": "text/html,*/*"}
    )
    assert html.status_code == 303
    assert html.headers["location"] == referer
    json_like = await http.post(
        "/settings", data=form, headers={"referer": referer, "accept": "*/*"}
    )
    assert json_like.json() == {"type": "redirect", "status": 303, "location": referer}


async def test_settings_rejects_an_unknown_model(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/settings", data={"activeModel": "gpt-5"}, headers={"referer": BASE_URL + "/"}
    )
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert "gpt-5" in message and "echo" in message and "parrot" in message


async def test_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "echo")
    big = {"inputs": "x" * 10_000}
    declared = await http.post(f"/conversation/{conversation_id}", json=big)
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = await http.post(
        f"/conversation/{conversation_id}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert (await http.get(f"/conversation/{conversation_id}")).json()["messages"] == []


BAD_TURNS: list[tuple[object, str]] = [
    ({}, "inputs"),
    ({"inputs": ""}, "inputs"),
    ({"inputs": "   "}, "inputs"),
    ({"inputs": 42}, "inputs"),
    ({"inputs": "hi", "options": []}, "options"),
    ({"inputs": "hi", "options": {"id": "not-a-uuid"}}, "options.id"),
    ({"inputs": "hi", "options": {"is_retry": "yes"}}, "is_retry"),
    ({"inputs": "hi", "parameters": {"temperature": -1}}, "temperature"),
    ({"inputs": "hi", "parameters": {"top_p": 2}}, "top_p"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": 0}}, "max_new_tokens"),
    ({"inputs": "hi", "parameters": {"max_new_tokens": 9000}}, "context"),
    ({"inputs": "hi", "parameters": {"truncate": 9000}}, "context"),
    ({"inputs": "hi", "parameters": {"stop": [1]}}, "stop"),
    ({"inputs": "hi", "parameters": {"frobnicate": 1}}, "frobnicate"),
    ({"inputs": "hi", "parameters": []}, "parameters"),
    ([1, 2], "object"),
]


@pytest.mark.parametrize(("body", "named"), BAD_TURNS)
async def test_bad_turns_are_400_naming_the_problem(
    http: httpx.AsyncClient, body: object, named: str
) -> None:
    conversation_id = await anew_conversation(http, "echo")
    answer = await http.post(f"/conversation/{conversation_id}", json=body)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert "Traceback" not in answer.text


async def test_bad_json_and_content_types(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "echo")
    for path in ("/conversation", f"/conversation/{conversation_id}"):
        bad = await http.post(
            path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]
        untyped = await http.post(path, content=b'{"model": "echo"}')
        assert untyped.status_code == 415


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "model"),
        ({"model": 3}, "model"),
        ({"model": "gpt-5"}, "gpt-5"),
        ({"model": "echo", "preprompt": 3}, "preprompt"),
    ],
)
async def test_bad_new_conversations_are_400(
    http: httpx.AsyncClient, body: object, named: str
) -> None:
    answer = await http.post("/conversation", json=body)
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert named in message
    if named == "gpt-5":
        assert "echo" in message and "five" in message  # the served models are listed


async def test_unknown_route_and_method_answer_json(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nowhere")).json() == {"error": "Not Found"}
    assert (await http.put("/conversation")).status_code == 405


async def test_echo_stream_and_saved_answer(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "parrot")
    events = await aconverse(http, conversation_id, "hello big world", details=True)
    assert [e.token.text for e in events if isinstance(e, StreamResponse)] == [
        "hello",
        " big",
        " world",
        END_OF_TEXT,
    ]
    last = final(events)
    assert last.generated_text == "hello big world"
    assert last.details is not None and last.details.finish_reason == "eos_token"
    assert last.details.generated_tokens == 4
    messages = (await http.get(f"/conversation/{conversation_id}")).json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello big world"),
        ("assistant", "hello big world"),
    ]


async def test_max_new_tokens_stop_and_full_text(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "five")
    events = await aconverse(http, conversation_id, "go", max_new_tokens=2, details=True)
    assert len(events) == 2
    assert final(events).details.finish_reason == "length"  # type: ignore[union-attr]

    events = await aconverse(
        http, conversation_id, "go", stop=["k t"], return_full_text=True, details=True
    )
    last = final(events)
    assert last.details is not None and last.details.finish_reason == "stop_sequence"
    assert last.generated_text == "go tok tok"  # TGI: the prompt, then text up to the stop
    messages = (await http.get(f"/conversation/{conversation_id}")).json()["messages"]
    assert messages[-1]["content"] == " to"  # saved without the stop sequence


async def test_history_preprompt_and_retry(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "transcript", preprompt="be brief")
    first = final(await aconverse(http, conversation_id, "one"))
    assert first.generated_text == "system:be_brief user:one"
    message_id = str(uuid.uuid4())
    body = {"inputs": "two", "options": {"id": message_id, "response_id": str(uuid.uuid4())}}
    await http.post(f"/conversation/{conversation_id}", json=body)
    retry = {"inputs": "three", "options": {"id": message_id, "is_retry": True}}
    answer = await http.post(f"/conversation/{conversation_id}", json=retry)
    assert "system:be_brief user:one assistant:system:be_brief_user:one user:three" in answer.text


async def test_engine_failure_is_an_error_event_without_details(http: httpx.AsyncClient) -> None:
    conversation_id = await anew_conversation(http, "broken")
    events = await aconverse(http, conversation_id, "hi")
    assert [e.token.text for e in events[:-1]] == ["one", " two"]  # type: ignore[union-attr]
    event = error(events)
    assert event.error_type == "generation"
    assert "secret" not in event.error and "Traceback" not in event.error
    saved = (await http.get(f"/conversation/{conversation_id}")).json()["messages"]
    assert saved == []  # a failed turn is not kept: neither question nor answer
