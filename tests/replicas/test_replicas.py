"""Two replicas on one PostgreSQL behave as one server: any replica serves any request of any
session, one turn of a conversation runs at a time across them, DELETE reaches a stream on
the other replica, and a replica refuses a database newer than itself.

The cases the issue names (history across replicas, stop-generating across replicas, a
replica killed mid-stream, a PostgreSQL restart under load) are reliability cases, in
tests/reliability/test_replicas.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import h2o_chat
from h2o_chat import errors
from h2o_chat.protocol.types import StreamResponse
from h2o_chat.server.routes.h2o import BUSY
from h2o_chat.server.store.base import SCHEMA_VERSION
from tests.support.h2o import (
    converse,
    final,
    new_conversation,
    session_client,
    session_headers,
)
from tests.support.lab import Lab
from tests.support.postgres import Cluster
from tests.support.replicas import events, replicas

LONG = 2000  # tokens of a "long" answer: 100 s, were it not stopped


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres: Cluster) -> Iterator[list[Lab]]:
    with replicas(tmp_path_factory.mktemp("replicas"), postgres.create_database()) as both:
        yield both


@pytest.fixture
def clients(pair: list[Lab]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """One session's raw clients of replica A and of replica B."""
    headers = session_headers()
    with session_client(pair[0].url, headers) as a, session_client(pair[1].url, headers) as b:
        yield a, b


def test_any_replica_serves_any_request_of_a_session(
    clients: tuple[httpx.Client, httpx.Client], pair: list[Lab]
) -> None:
    a, b = clients
    form = {"activeModel": "recall", "ethicsModalAccepted": "true"}
    assert a.post("/settings", data=form, headers={"referer": pair[0].url}).status_code == 200
    conversation_id = new_conversation(a, "recall", preprompt="be brief")
    assert b.get(f"/conversation/{conversation_id}").json()["preprompt"] == "be brief"
    answer = final(converse(b, conversation_id, "hello"))
    assert answer.generated_text == "system:be_brief user:hello"
    stored = a.get(f"/conversation/{conversation_id}").json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "hello"),
        ("assistant", "system:be_brief user:hello"),
    ]
    assert (
        a.patch(f"/conversation/{conversation_id}", json={"title": "Greeting"}).status_code == 200
    )
    listed = b.get("/conversations").json()
    assert [(c["id"], c["title"]) for c in listed] == [(conversation_id, "Greeting")]
    with session_client(pair[1].url) as stranger:  # another session, on either replica
        assert stranger.get(f"/conversation/{conversation_id}").status_code == 404
    assert b.delete(f"/conversation/{conversation_id}").status_code == 200
    assert a.get(f"/conversation/{conversation_id}").status_code == 404


def test_a_second_turn_while_one_generates_on_another_replica_is_refused(
    clients: tuple[httpx.Client, httpx.Client], pair: list[Lab]
) -> None:
    a, b = clients
    conversation_id = new_conversation(a, "recall")
    path = f"/conversation/{conversation_id}"
    body = {"inputs": "long first", "parameters": {"max_new_tokens": LONG}}
    with a.stream("POST", path, json=body) as running:
        answer = events(running)
        received = [next(answer), next(answer)]  # the transcript, then " n0": it runs on A
        for replica in (b, a):
            refused = replica.post(path, json={"inputs": "meanwhile"})
            assert refused.status_code == 409
            assert refused.json() == {"error": BUSY}
        with h2o_chat.Client(pair[1].url, headers=dict(b.headers)) as client:
            with pytest.raises(errors.HTTPStatusError) as caught:
                client.conversation("recall", id=conversation_id).send("meanwhile")
            assert caught.value.status_code == 409
            assert "still generating" in caught.value.message
        received.append(next(answer))  # A's answer goes on, untouched
        assert b.post(path + "/stop-generating").json() == {"stopped": True}
        received += list(answer)
    assert all(isinstance(event, StreamResponse) for event in received)
    partial = "".join(e.token.text for e in received if isinstance(e, StreamResponse))
    # once it ended, B takes the next turn, and sees it
    second = final(converse(b, conversation_id, "meanwhile"))
    assert second.generated_text == (
        f"user:long_first assistant:{'_'.join(partial.split())} user:meanwhile"
    )


def test_delete_on_one_replica_stops_the_stream_on_the_other(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    conversation_id = new_conversation(a, "recall")
    path = f"/conversation/{conversation_id}"
    body = {"inputs": "long story", "parameters": {"max_new_tokens": LONG}}
    with a.stream("POST", path, json=body) as running:
        answer = events(running)
        next(answer)
        next(answer)
        assert b.delete(path).status_code == 200  # returns once A's stream has ended
        rest = list(answer)
    assert len(rest) <= 1  # at most the token that was on its way
    assert a.get(path).status_code == 404
    assert b.get("/conversations").json() == []


def test_a_replica_refuses_a_database_newer_than_itself(tmp_path: Path, postgres: Cluster) -> None:
    url = postgres.create_database()
    postgres.query(url, "CREATE TABLE schema_version (version INTEGER)")
    postgres.query(url, "INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
    argv = [sys.executable, "-m", "h2o_chat", "serve", "--port", "0", "--db", url]
    done = subprocess.run(
        [*argv, "--model", "echo=synthetic"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this h2o-chat's" in done.stderr
    assert postgres.query(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION + 1,)]
