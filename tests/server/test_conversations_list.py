"""The session's conversations: the list, rename, summarize (the stores' own semantics and
migrations are in test_store.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from h2o_chat.server.routes.conversations import TITLE_MAX_CHARS, clean_title
from tests.support.postgres import STORES, db_argument
from tests.support.replay import MODEL, replay_server, title_for
from tests.support.servers import RunningServer


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server on each store: the routes behave the same on SQLite and PostgreSQL."""
    tmp = tmp_path_factory.mktemp("conversations")
    with replay_server(tmp, db=db_argument(request.param, request, tmp)) as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    """A client with a session of its own."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.cookies.set("hf-chat", str(uuid.uuid4()))
        yield client


def create(http: httpx.Client) -> str:
    response = http.post("/conversation", json={"model": MODEL})
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversationId"]
    return conversation_id


def ask(http: httpx.Client, conversation_id: str, inputs: str) -> None:
    """One whole turn (its answer is stored once the stream ends)."""
    body = {"inputs": inputs, "parameters": {"max_new_tokens": 200}}
    response = http.post(f"/conversation/{conversation_id}", json=body)
    assert response.status_code == 200
    assert '"generated_text":"' in response.text


def listed(http: httpx.Client) -> list[dict[str, str]]:
    response = http.get("/conversations")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    items: list[dict[str, str]] = response.json()
    return items


def test_a_new_session_has_no_conversations(http: httpx.Client) -> None:
    assert listed(http) == []


def test_the_list_is_newest_activity_first_with_titles(http: httpx.Client) -> None:
    older, newer, empty = create(http), create(http), create(http)
    ask(http, older, "How do lighthouses work at night?")
    ask(http, newer, "  Tell me\nabout the history of tea in China, from the start please")
    assert [c["id"] for c in listed(http)] == [newer, older, empty]
    ask(http, older, "And in the fog?")  # a new exchange moves it to the top
    items = listed(http)
    assert [c["id"] for c in items] == [older, newer, empty]
    assert set(items[0]) == {"id", "title", "model", "updatedAt"}
    assert all(c["model"] == MODEL for c in items)
    assert items[0]["updatedAt"] > items[1]["updatedAt"] > items[2]["updatedAt"]
    # until a conversation has a title, it is the start of its first question, on one line
    assert [c["title"] for c in items] == [
        "How do lighthouses work at night?",
        "Tell me about the history of tea in Chi\u2026",
        "Untitled",
    ]
    assert http.get(f"/conversation/{older}").json()["title"] == items[0]["title"]


def test_rename(http: httpx.Client) -> None:
    first, second = create(http), create(http)
    ask(http, first, "What is the capital of Japan?")
    response = http.patch(f"/conversation/{second}", json={"title": "  Trip\n planning "})
    assert response.status_code == 200
    assert response.json() == {"title": "Trip planning"}
    items = listed(http)
    assert [(c["id"], c["title"]) for c in items] == [
        (first, "What is the capital of Japan?"),  # a rename does not reorder
        (second, "Trip planning"),
    ]
    assert http.get(f"/conversation/{second}").json()["title"] == "Trip planning"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": "   "}, "'title' must be a non-empty string"),
        ({"title": 5}, "'title' must be a non-empty string"),
        ({}, "'title' must be a non-empty string"),
        ({"title": "x" * (TITLE_MAX_CHARS + 1)}, "'title' must be at most 100 characters"),
    ],
)
def test_rename_refuses_a_bad_title(
    http: httpx.Client, body: dict[str, object], message: str
) -> None:
    conversation_id = create(http)
    response = http.patch(f"/conversation/{conversation_id}", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert listed(http)[0]["title"] == "Untitled"


def test_summarize_asks_the_model_and_keeps_its_title(http: httpx.Client) -> None:
    conversation_id = create(http)
    path = f"/conversation/{conversation_id}"
    assert http.post(path + "/summarize").json() == {}  # no message yet: no title
    question = "please explain how tides follow the moon"
    ask(http, conversation_id, question)
    ask(http, conversation_id, "and the sun?")
    response = http.post(path + "/summarize")
    assert response.status_code == 200
    assert response.json() == {"title": "Please Explain How Tides"}  # quotes cleaned off
    assert title_for(question) == "Please Explain How Tides"
    assert listed(http)[0]["title"] == "Please Explain How Tides"
    assert http.get(path).json()["title"] == "Please Explain How Tides"
    assert len(http.get(path).json()["messages"]) == 4  # the summary is not a message


def test_another_session_sees_none_of_it(http: httpx.Client, server: RunningServer) -> None:
    conversation_id = create(http)
    ask(http, conversation_id, "secret plans")
    path = f"/conversation/{conversation_id}"
    with httpx.Client(base_url=server.url, timeout=60) as stranger:
        stranger.cookies.set("hf-chat", str(uuid.uuid4()))
        assert listed(stranger) == []
        answers = [
            stranger.patch(path, json={"title": "mine now"}),
            stranger.post(path + "/summarize"),
        ]
        for answer in answers:
            assert answer.status_code == 404
            assert answer.json() == {"error": "Conversation not found"}
    assert listed(http)[0]["title"] == "secret plans"


def test_a_deleted_conversation_leaves_the_list(http: httpx.Client) -> None:
    kept, deleted = create(http), create(http)
    assert http.delete(f"/conversation/{deleted}").status_code == 200
    assert [c["id"] for c in listed(http)] == [kept]
    assert http.patch(f"/conversation/{deleted}", json={"title": "x"}).status_code == 404


def test_malformed_ids_are_404(http: httpx.Client) -> None:
    assert http.patch("/conversation/nothex", json={"title": "x"}).status_code == 404
    assert http.post("/conversation/" + "0" * 24 + "/summarize").status_code == 404


@pytest.mark.parametrize(
    ("written", "title"),
    [
        ('"Capital of Japan"', "Capital of Japan"),
        ("Title: **Sourdough at home.**\nMore text", "Sourdough at home"),
        ("\n\n  \u201cQuantum   entanglement\u201d  \n", "Quantum entanglement"),
        ("```", ""),
        ("word " * 40, ("word " * 20).strip() + "\u2026"),
    ],
)
def test_clean_title(written: str, title: str) -> None:
    assert clean_title(written) == title
    assert len(clean_title(written)) <= TITLE_MAX_CHARS
