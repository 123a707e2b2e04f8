"""The client across a server restart: the conversation lives in the database, not the process."""

from __future__ import annotations

from pathlib import Path

import pytest

import h2o_chat
from tests.support.h2o import session_client, session_headers
from tests.support.lab import TEST_MODELS, lab
from tests.support.servers import free_port


@pytest.mark.reliability(
    "Server restarted between two turns",
    section="Client faults",
    did=(
        "One client object: a turn of a conversation, then the server is stopped and started "
        "again on the same port and database, then the next turn on the same Conversation"
    ),
    expect=(
        "The next turn works through the same client (its pooled connection is gone); the "
        "stored conversation holds both exchanges in order"
    ),
)
def test_conversation_survives_a_restart(tmp_path: Path) -> None:
    port, db, headers = free_port(), tmp_path / "h2o.sqlite3", session_headers()
    with h2o_chat.Client(f"http://127.0.0.1:{port}", headers=headers) as client:
        conversation = client.conversation("echo")
        with lab(tmp_path, *TEST_MODELS, port=port, db=db):
            assert conversation.send("before the restart").text == "before the restart"
        with lab(tmp_path, *TEST_MODELS, port=port, db=db) as restarted:
            assert conversation.send("after the restart").text == "after the restart"
            with session_client(restarted.url, headers) as raw:
                stored = raw.get(f"/conversation/{conversation.id}").json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [
        ("user", "before the restart"),
        ("assistant", "before the restart"),
        ("user", "after the restart"),
        ("assistant", "after the restart"),
    ]
