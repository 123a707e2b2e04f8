"""The H2o routes' edge cases on a synthetic server: sessions, gates, errors, stream semantics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from h2o_chat.protocol.types import END_OF_TEXT, StreamResponse
from tests.support.h2o import client, converse, final, new_conversation
from tests.support.servers import RunningServer

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def http(synthetic_server: RunningServer) -> Iterator[httpx.Client]:
    with client(synthetic_server) as http:
        yield http


def test_any_request_mints_a_session(http: httpx.Client) -> None:
    response = http.get("/api/models")
    assert "hf-chat=" in response.headers["set-cookie"]
    again = http.get("/api/models")  # the jar now holds the cookie
    assert "set-cookie" not in again.headers


def test_conversation_ids_are_24_hex(http: httpx.Client) -> None:
    ids = {new_conversation(http, "echo") for _ in range(3)}
    assert len(ids) == 3
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


def test_session_isolation_on_every_conversation_route(
    http: httpx.Client, synthetic_server: RunningServer
) -> None:
    conversation_id = new_conversation(http, "echo")
    path = f"/conversation/{conversation_id}"
    body = {"inputs": "hello"}
    with client(synthetic_server) as stranger:
        stranger.cookies.set("hf-chat", str(uuid.uuid4()))
        answers = [
            stranger.get(path),
            stranger.post(path, json=body),
            stranger.post(path + "/stop-generating"),
            stranger.delete(path),
        ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.json() == {"error": "Conversation not found"}
    assert http.get(path).status_code == 200  # still there for its owner


@pytest.mark.parametrize("bad_id", ["nothex", "0" * 23, "g" * 24, "0" * 25, "A" * 24])
def test_malformed_and_unknown_ids_are_404(http: httpx.Client, bad_id: str) -> None:
    assert http.get(f"/conversation/{bad_id}").status_code == 404
    assert http.post(f"/conversation/{bad_id}", json={"inputs": "x"}).status_code == 404
    assert http.get(f"/conversation/{'0' * 24}").status_code == 404


def test_delete_conversation(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "echo")
    assert http.delete(f"/conversation/{conversation_id}").status_code == 200
    assert http.get(f"/conversation/{conversation_id}").status_code == 404
    assert http.delete(f"/conversation/{conversation_id}").status_code == 404


def test_referer_check_on_form_posts(http: httpx.Client, synthetic_server: RunningServer) -> None:
    form = {"activeModel": "echo"}
    missing = http.post("/settings", data=form)
    assert missing.status_code == 403
    assert missing.json() == {"error": "Non-JSON form requests need to have a referer"}
    foreign = http.post("/settings", data=form, headers={"referer": "https://evil.example/"})
    assert foreign.status_code == 403
    assert foreign.json() == {"error": "Invalid referer for POST request"}
    as_text = http.post(
        "/conversation", content=b'{"model": "echo"}', headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 403
    own = http.post("/settings", data=form, headers={"referer": synthetic_server.url + "/"})
    assert own.status_code == 200


def test_settings_redirects_303_for_html_else_json(
    http: httpx.Client, synthetic_server: RunningServer
) -> None:
    referer = synthetic_server.url + "/chat"
    form = {"ethicsModalAccepted": "false", "activeModel": "parrot"}
    html = http.post(
        "/settings", data=form, headers={"referer": referer, "accept": "text/html,*/*"}
    )
    assert html.status_code == 303
    assert html.headers["location"] == referer
    json_like = http.post("/settings", data=form, headers={"referer": referer, "accept": "*/*"})
    assert json_like.json() == {"type": "redirect", "status": 303, "location": referer}


def test_settings_rejects_an_unknown_model(
    http: httpx.Client, synthetic_server: RunningServer
) -> None:
    answer = http.post(
        "/settings", data={"activeModel": "gpt-5"}, headers={"referer": synthetic_server.url + "/"}
    )
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert "gpt-5" in message and "echo" in message and "parrot" in message


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "echo")
    big = {"inputs": "x" * 10_000}
    declared = http.post(f"/conversation/{conversation_id}", json=big)
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = http.post(
        f"/conversation/{conversation_id}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert http.get(f"/conversation/{conversation_id}").json()["messages"] == []


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
def test_bad_turns_are_400_naming_the_problem(http: httpx.Client, body: object, named: str) -> None:
    conversation_id = new_conversation(http, "echo")
    answer = http.post(f"/conversation/{conversation_id}", json=body)
    assert answer.status_code == 400
    assert named in answer.json()["error"]
    assert "Traceback" not in answer.text


def test_bad_json_and_content_types(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "echo")
    for path in ("/conversation", f"/conversation/{conversation_id}"):
        bad = http.post(path, content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]
        untyped = http.post(path, content=b'{"model": "echo"}')
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
def test_bad_new_conversations_are_400(http: httpx.Client, body: object, named: str) -> None:
    answer = http.post("/conversation", json=body)
    assert answer.status_code == 400
    message = answer.json()["error"]
    assert named in message
    if named == "gpt-5":
        assert "echo" in message and "five" in message  # the served models are listed


def test_unknown_route_and_method_answer_json(http: httpx.Client) -> None:
    assert http.get("/nowhere").json() == {"error": "Not Found"}
    assert http.put("/conversation").status_code == 405


def test_echo_stream_and_saved_answer(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "parrot")
    events = converse(http, conversation_id, "hello big world", details=True)
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
    messages = http.get(f"/conversation/{conversation_id}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello big world"),
        ("assistant", "hello big world"),
    ]


def test_max_new_tokens_stop_and_full_text(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "five")
    events = converse(http, conversation_id, "go", max_new_tokens=2, details=True)
    assert len(events) == 2
    assert final(events).details.finish_reason == "length"  # type: ignore[union-attr]

    events = converse(
        http, conversation_id, "go", stop=["k t"], return_full_text=True, details=True
    )
    last = final(events)
    assert last.details is not None and last.details.finish_reason == "stop_sequence"
    assert last.generated_text == "go tok tok"  # TGI: the prompt, then text up to the stop
    messages = http.get(f"/conversation/{conversation_id}").json()["messages"]
    assert messages[-1]["content"] == " to"  # saved without the stop sequence


def test_history_preprompt_and_retry(http: httpx.Client) -> None:
    conversation_id = new_conversation(http, "transcript", preprompt="be brief")
    first = final(converse(http, conversation_id, "one"))
    assert first.generated_text == "system:be_brief user:one"
    message_id = str(uuid.uuid4())
    body = {"inputs": "two", "options": {"id": message_id, "response_id": str(uuid.uuid4())}}
    http.post(f"/conversation/{conversation_id}", json=body).read()
    retry = {"inputs": "three", "options": {"id": message_id, "is_retry": True}}
    answer = http.post(f"/conversation/{conversation_id}", json=retry)
    assert "system:be_brief user:one assistant:system:be_brief_user:one user:three" in answer.text


def test_cookie_is_secure_only_over_https(synthetic_server: RunningServer) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as behind a local TLS proxy
    answer = httpx.get(synthetic_server.url + "/", headers={"x-forwarded-proto": "https"})
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie
