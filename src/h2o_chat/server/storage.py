"""SQLite storage of sessions' settings, conversations and their messages (one file)."""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    model TEXT NOT NULL,
    preprompt TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_session ON conversations (session_id);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id, seq);
"""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class StoredConversation:
    id: str
    model: str
    preprompt: str | None
    messages: tuple[Message, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "preprompt": self.preprompt,
            "messages": [m.to_dict() for m in self.messages],
        }


def new_conversation_id() -> str:
    """24 hex characters from a cryptographic source, like a MongoDB ObjectId."""
    return secrets.token_hex(12)


class Storage:
    """The database at ``path`` (created with its parent directory); one connection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across crashes
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def save_settings(self, session_id: str, settings: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO sessions (id, settings, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
            "updated_at = excluded.updated_at",
            (session_id, orjson.dumps(settings).decode(), time.time()),
        )

    def create_conversation(self, session_id: str, model: str, preprompt: str | None) -> str:
        conversation_id = new_conversation_id()
        self._db.execute(
            "INSERT INTO conversations (id, session_id, model, preprompt, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (conversation_id, session_id, model, preprompt, time.time()),
        )
        return conversation_id

    def conversation(self, session_id: str, conversation_id: str) -> StoredConversation | None:
        """The session's conversation with its messages in order, or None."""
        row = self._db.execute(
            "SELECT model, preprompt FROM conversations WHERE id = ? AND session_id = ?",
            (conversation_id, session_id),
        ).fetchone()
        if row is None:
            return None
        messages = self._db.execute(
            "SELECT id, role, content FROM messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        return StoredConversation(
            conversation_id, row[0], row[1], tuple(Message(*m) for m in messages)
        )

    def delete_conversation(self, session_id: str, conversation_id: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM conversations WHERE id = ? AND session_id = ?",
            (conversation_id, session_id),
        )
        return cursor.rowcount > 0

    def save_turn(
        self,
        conversation_id: str,
        question: Message,
        answer: Message,
        *,
        replacing: str | None = None,
    ) -> None:
        """Append a finished exchange in one transaction, as chat-ui saved it after the stream.

        ``replacing`` (a retry) first deletes that message and every later one. Nothing
        happens if the conversation was deleted meanwhile.
        """
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            if replacing is not None:
                self._db.execute(
                    "DELETE FROM messages WHERE conversation_id = ? AND seq >= "
                    "(SELECT MIN(seq) FROM messages WHERE conversation_id = ? AND id = ?)",
                    (conversation_id, conversation_id, replacing),
                )
            now = time.time()
            self._db.executemany(
                "INSERT INTO messages (id, conversation_id, role, content, created_at) "
                "SELECT ?, id, ?, ?, ? FROM conversations WHERE id = ?",
                [(m.id, m.role, m.content, now, conversation_id) for m in (question, answer)],
            )


def new_message(role: str, content: str, message_id: str | None = None) -> Message:
    """A message with the id the client chose, or a fresh uuid4."""
    return Message(message_id or str(uuid.uuid4()), role, content)
