"""SQLite storage of sessions' settings, conversations and their messages (one file)."""

from __future__ import annotations

import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
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

# Each step takes the schema one version up (``PRAGMA user_version``: 0 is SCHEMA above), so a
# file made by any earlier version opens; a new file goes through the same steps.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: a title (chat-ui's rename and summarize) and the last activity, for the list
        "ALTER TABLE conversations ADD COLUMN title TEXT",
        "ALTER TABLE conversations ADD COLUMN updated_at REAL NOT NULL DEFAULT 0",
        "UPDATE conversations SET updated_at = COALESCE((SELECT MAX(created_at) FROM messages "
        "WHERE conversation_id = conversations.id), created_at)",
        "CREATE INDEX conversations_updated ON conversations (session_id, updated_at)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
UNTITLED = "Untitled"
FALLBACK_TITLE_CHARS = 40  # of the first message, when the conversation has no title


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "role": self.role, "content": self.content}


def display_title(title: str | None, first_message: str | None) -> str:
    """The title to show: the stored one, else the start of the first message, else Untitled."""
    if title:
        return title
    words = " ".join((first_message or "").split())
    if len(words) > FALLBACK_TITLE_CHARS:
        words = words[: FALLBACK_TITLE_CHARS - 1].rstrip() + "\u2026"
    return words or UNTITLED


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class StoredConversation:
    id: str
    model: str
    preprompt: str | None
    messages: tuple[Message, ...]
    title: str | None = None  # None until renamed or summarized
    updated_at: float = 0.0  # the last exchange (or the creation)

    def to_dict(self) -> dict[str, Any]:
        first = next((m.content for m in self.messages if m.role == "user"), None)
        return {
            "id": self.id,
            "title": display_title(self.title, first),
            "model": self.model,
            "preprompt": self.preprompt,
            "updatedAt": _iso(self.updated_at),
            "messages": [m.to_dict() for m in self.messages],
        }


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """A conversation as the list shows it; ``first_message`` is the start of the first
    question (for a title until there is one)."""

    id: str
    model: str
    title: str | None
    updated_at: float
    first_message: str | None

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": display_title(self.title, self.first_message),
            "model": self.model,
            "updatedAt": _iso(self.updated_at),
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
        self._migrate()

    def _migrate(self) -> None:
        """Apply the missing :data:`MIGRATIONS`, each in its own transaction."""
        for version, statements in enumerate(MIGRATIONS, start=1):
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")  # another process may be migrating too
                if self._db.execute("PRAGMA user_version").fetchone()[0] >= version:
                    continue
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version}")

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
        now = time.time()
        self._db.execute(
            "INSERT INTO conversations (id, session_id, model, preprompt, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, session_id, model, preprompt, now, now),
        )
        return conversation_id

    def conversations(self, session_id: str) -> list[ConversationInfo]:
        """The session's conversations, the most recently active first."""
        rows = self._db.execute(
            "SELECT id, model, title, updated_at, (SELECT substr(content, 1, 200) FROM messages "
            "WHERE conversation_id = conversations.id AND role = 'user' ORDER BY seq LIMIT 1) "
            "FROM conversations WHERE session_id = ? ORDER BY updated_at DESC, rowid DESC",
            (session_id,),
        ).fetchall()
        return [ConversationInfo(*row) for row in rows]

    def set_title(self, session_id: str, conversation_id: str, title: str) -> bool:
        """Rename the session's conversation; whether it exists."""
        cursor = self._db.execute(
            "UPDATE conversations SET title = ? WHERE id = ? AND session_id = ?",
            (title, conversation_id, session_id),
        )
        return cursor.rowcount > 0

    def conversation(self, session_id: str, conversation_id: str) -> StoredConversation | None:
        """The session's conversation with its messages in order, or None."""
        row = self._db.execute(
            "SELECT model, preprompt, title, updated_at FROM conversations "
            "WHERE id = ? AND session_id = ?",
            (conversation_id, session_id),
        ).fetchone()
        if row is None:
            return None
        messages = self._db.execute(
            "SELECT id, role, content FROM messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        model, preprompt, title, updated_at = row
        kept = tuple(Message(*m) for m in messages)
        return StoredConversation(conversation_id, model, preprompt, kept, title, updated_at)

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
            self._db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id)
            )


def new_message(role: str, content: str, message_id: str | None = None) -> Message:
    """A message with the id the client chose, or a fresh uuid4."""
    return Message(message_id or str(uuid.uuid4()), role, content)
