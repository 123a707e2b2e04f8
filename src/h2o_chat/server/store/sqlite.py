"""The SQLite store: one file, used from one thread of its own, off the event loop.

Every statement runs on a dedicated storage thread (a single-thread executor that owns the
connection) and the event loop awaits it, so a slow disk, a checkpoint, or another process
holding the file's write lock (waited for up to :data:`BUSY_SECONDS`, then 503) delays only
the requests that need the database, never the streams already running. One thread also
means one connection and statements in order, as before: WAL, ``synchronous=NORMAL``
(durable across crashes with WAL), foreign keys on.

SQLite serves one server process: it keeps the same claims as PostgreSQL (a second turn of a
conversation is refused), but stop requests do not reach other processes, and the claims of
a process that died are free only once their lease has run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson

from h2o_chat.server.store.base import (
    FIRST_MESSAGE_CHARS,
    LEASE_SECONDS,
    SCHEMA_VERSION,
    ConversationBusy,
    ConversationInfo,
    Message,
    StoredConversation,
    StoreUnavailable,
    TurnClaims,
    check_schema,
    new_conversation_id,
)

logger = logging.getLogger("h2o_chat.server")

P = ParamSpec("P")
T = TypeVar("T")

BUSY_SECONDS = 5.0  # how long a statement waits for another process's write lock

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
    (  # 2: the claims of running turns (one turn at a time per conversation)
        "CREATE TABLE active_turns ("
        " conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,"
        " replica INTEGER NOT NULL,"
        " claim TEXT NOT NULL,"
        " expires_at REAL NOT NULL)",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION

UNAVAILABLE = ("database is locked", "database table is locked", "disk i/o error", "unable to open")


def _on_thread(
    method: Callable[Concatenate[SQLiteStore, P], T],
) -> Callable[Concatenate[SQLiteStore, P], Coroutine[Any, Any, T]]:
    """The method, run on the store's storage thread and awaited (see :meth:`SQLiteStore._run`)."""

    async def awaited(self: SQLiteStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(method, self, *args, **kwargs)

    awaited.__doc__ = method.__doc__
    return awaited


class SQLiteStore(TurnClaims):
    """The store in the SQLite file at ``path``: open with :meth:`open`.

    The methods marked ``@_on_thread`` are written as plain SQLite code and run on the
    storage thread; the claims this process holds are kept on the event loop.
    """

    shared = False

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="h2o-chat-sqlite")
        self._db: sqlite3.Connection | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        """Open (create, migrate) the file; raises :class:`SchemaTooNewError` for a newer one."""
        store = cls(path)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        store._heartbeat = asyncio.create_task(store._keep_claims())
        return store

    async def _run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` on the storage thread, awaited.

        A caller that is cancelled stops waiting, but the statement still runs to its end
        (a transaction is never left half-done).
        """
        call = functools.partial(function, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            if str(exc).lower().startswith(UNAVAILABLE):
                raise StoreUnavailable(f"database unavailable: {exc}") from exc
            raise

    # -- the database, on the storage thread

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is closed")
        return self._db

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across crashes
            self._db.execute("PRAGMA foreign_keys=ON")
            check_schema(self._db.execute("PRAGMA user_version").fetchone()[0], str(self.path))
            self._db.executescript(SCHEMA)
            self._migrate()
        except BaseException:
            self._db.close()
            self._db = None
            raise

    def _migrate(self) -> None:
        """Apply the missing :data:`MIGRATIONS`, each in its own transaction."""
        db = self._conn
        for version, statements in enumerate(MIGRATIONS, start=1):
            with db:
                db.execute("BEGIN IMMEDIATE")  # another process may be migrating too
                found = db.execute("PRAGMA user_version").fetchone()[0]
                check_schema(found, str(self.path))
                if found >= version:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @_on_thread
    def save_settings(self, session_id: str, settings: Mapping[str, Any]) -> None:
        self._conn.execute(
            "INSERT INTO sessions (id, settings, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
            "updated_at = excluded.updated_at",
            (session_id, orjson.dumps(dict(settings)).decode(), time.time()),
        )

    @_on_thread
    def create_conversation(self, session_id: str, model: str, preprompt: str | None) -> str:
        conversation_id = new_conversation_id()
        now = time.time()
        self._conn.execute(
            "INSERT INTO conversations (id, session_id, model, preprompt, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, session_id, model, preprompt, now, now),
        )
        return conversation_id

    @_on_thread
    def conversations(self, session_id: str) -> list[ConversationInfo]:
        rows = self._conn.execute(
            "SELECT id, model, title, updated_at, (SELECT substr(content, 1, ?) FROM messages "
            "WHERE conversation_id = conversations.id AND role = 'user' ORDER BY seq LIMIT 1) "
            "FROM conversations WHERE session_id = ? ORDER BY updated_at DESC, rowid DESC",
            (FIRST_MESSAGE_CHARS, session_id),
        ).fetchall()
        return [ConversationInfo(*row) for row in rows]

    def _read(self, session_id: str, conversation_id: str) -> StoredConversation | None:
        row = self._conn.execute(
            "SELECT model, preprompt, title, updated_at FROM conversations "
            "WHERE id = ? AND session_id = ?",
            (conversation_id, session_id),
        ).fetchone()
        if row is None:
            return None
        messages = self._conn.execute(
            "SELECT id, role, content FROM messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        model, preprompt, title, updated_at = row
        kept = tuple(Message(*m) for m in messages)
        return StoredConversation(conversation_id, model, preprompt, kept, title, updated_at)

    conversation = _on_thread(_read)

    @_on_thread
    def set_title(self, session_id: str, conversation_id: str, title: str) -> bool:
        cursor = self._conn.execute(
            "UPDATE conversations SET title = ? WHERE id = ? AND session_id = ?",
            (title, conversation_id, session_id),
        )
        return cursor.rowcount > 0

    @_on_thread
    def delete_conversation(self, session_id: str, conversation_id: str) -> bool:
        cursor = self._conn.execute(
            "DELETE FROM conversations WHERE id = ? AND session_id = ?",
            (conversation_id, session_id),
        )
        return cursor.rowcount > 0

    def _claim_on_thread(
        self, session_id: str, conversation_id: str, claim: str
    ) -> StoredConversation | None:
        db = self._conn
        with db:
            db.execute("BEGIN IMMEDIATE")
            owned = db.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND session_id = ?",
                (conversation_id, session_id),
            ).fetchone()
            if owned is None:
                return None
            now = time.time()
            # Taken over only from a claim whose lease ran out or that this process left behind
            claimed = db.execute(
                "INSERT INTO active_turns (conversation_id, replica, claim, expires_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET "
                "replica = excluded.replica, claim = excluded.claim, "
                "expires_at = excluded.expires_at "
                "WHERE active_turns.expires_at < ? OR active_turns.replica = ? RETURNING 1",
                (conversation_id, self.replica, claim, now + LEASE_SECONDS, now, self.replica),
            ).fetchall()
            if not claimed:
                raise ConversationBusy(conversation_id)
            return self._read(session_id, conversation_id)

    def _save_turn(
        self,
        conversation_id: str,
        claim: str,
        question: Message,
        answer: Message,
        replacing: str | None,
    ) -> bool:
        db = self._conn
        with db:  # one transaction
            db.execute("BEGIN IMMEDIATE")
            held = db.execute(
                "SELECT 1 FROM active_turns WHERE conversation_id = ? AND claim = ?",
                (conversation_id, claim),
            ).fetchone()
            if held is None:  # deleted, or the lease ran out and another turn took it
                return False
            if replacing is not None:
                db.execute(
                    "DELETE FROM messages WHERE conversation_id = ? AND seq >= "
                    "(SELECT MIN(seq) FROM messages WHERE conversation_id = ? AND id = ?)",
                    (conversation_id, conversation_id, replacing),
                )
            now = time.time()
            db.executemany(
                "INSERT INTO messages (id, conversation_id, role, content, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(m.id, conversation_id, m.role, m.content, now) for m in (question, answer)],
            )
            db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id)
            )
            return True

    def _release_on_thread(self, claims: list[str]) -> None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "DELETE FROM active_turns WHERE claim = ?", [(claim,) for claim in claims]
            )

    def _renew_on_thread(self, claims: list[str]) -> None:
        expires = time.time() + LEASE_SECONDS
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(
                "UPDATE active_turns SET expires_at = ? WHERE claim = ?",
                [(expires, claim) for claim in claims],
            )

    @_on_thread
    def turn_running(self, conversation_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM active_turns WHERE conversation_id = ? AND expires_at >= ?",
            (conversation_id, time.time()),
        ).fetchone()
        return row is not None

    # -- the interface, on the event loop

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        try:
            await self._release_all()
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)

    async def _claim(
        self, session_id: str, conversation_id: str, claim: str
    ) -> StoredConversation | None:
        return await self._run(self._claim_on_thread, session_id, conversation_id, claim)

    async def save_turn(
        self,
        conversation_id: str,
        question: Message,
        answer: Message,
        *,
        replacing: str | None = None,
    ) -> bool:
        claim = self._claim_of(conversation_id)
        if claim is None:  # no turn of it runs here
            return False
        return await self._run(self._save_turn, conversation_id, claim, question, answer, replacing)

    async def _renew(self, claims: list[str]) -> None:
        await self._run(self._renew_on_thread, claims)

    async def _release(self, claims: list[str]) -> None:
        await self._run(self._release_on_thread, claims)

    async def request_stop(self, conversation_id: str) -> None:
        return None  # no other process to reach
