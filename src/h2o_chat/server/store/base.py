"""What every store keeps and promises: the records, the async interface, the schema version.

A store holds the sessions' settings and their conversations with their messages. Two
implement :class:`Store`: :mod:`.sqlite` (one file, for one server process) and
:mod:`.postgres` (one database shared by any number of gateway replicas). Both keep the
same semantics, checked by one test suite run against each:

- a conversation belongs to the session that created it; under another session it does not
  exist;
- a turn's question and answer are saved together, once the answer has ended (complete or
  stopped), in one transaction; a retry replaces the retried message and every later one in
  that same transaction.

**Schema versions.** :data:`SCHEMA_VERSION` is the version this code writes. Each store keeps
the version its database is at (SQLite: ``PRAGMA user_version``; PostgreSQL: the
``schema_version`` table) and, on opening, applies its missing migration steps in order,
in transactions taken under a lock, so that two processes starting together migrate once.
A database at a *newer* version than :data:`SCHEMA_VERSION` is refused
(:class:`SchemaTooNewError`): an older server must not write a schema it does not know.
Version 1 added conversation titles and ``updated_at``; version 2 added ``active_turns``.

**One turn at a time per conversation.** A conversation's history is read, the model
answers, and the exchange is appended: two turns of one conversation running at once would
each answer without the other and leave their exchanges interleaved. So a turn first
*claims* the conversation: :meth:`Store.begin_turn` inserts an ``active_turns`` row (the
conversation, the replica, the claim's own token, a lease expiry) and reads the conversation
under that claim; a conversation that already has a live claim raises
:class:`ConversationBusy`. :meth:`Store.save_turn` saves only while the claim is still this
turn's, and :meth:`Store.end_turn` deletes it, before the answer's final event is sent (so
the client's next turn is never refused). The route answers ``ConversationBusy`` with 409
``{"error": ...}`` rather than a TGI error event: the turn is refused before anything is
generated or streamed, as chat-ui refused a turn it would not run (404, 429), and clients
map it to an error without reading a stream.

Why a row with a lease rather than a lock held for the whole turn: a row lock or a
session advisory lock lives on a database connection, so every running stream would hold a
connection of the pool for minutes (200 streams, 200 connections). A row costs two short
statements per turn, works the same in SQLite, and its lease (:data:`LEASE_SECONDS`,
renewed every :data:`HEARTBEAT_SECONDS` for the claims a replica holds) frees the
conversations of a replica that stopped renewing. PostgreSQL also frees them at once when
the replica's process dies: see :mod:`.postgres`. A claim whose release failed (the database
was away) is released again every :data:`RETRY_SECONDS` until it is, so an outage does not
leave conversations busy for a lease (each claim has a token of its own, so such a late
release never deletes a newer claim).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import platformdirs

SCHEMA_VERSION = 2
LEASE_SECONDS = 30.0  # a claim nobody renewed for this long is free
HEARTBEAT_SECONDS = LEASE_SECONDS / 3  # how often a replica renews its claims
RETRY_SECONDS = 0.5  # how often a replica retries releasing a claim it could not release
SETTLE_SECONDS = 5.0  # the longest a new turn waits for stale claims to be dropped
UNTITLED = "Untitled"
FALLBACK_TITLE_CHARS = 40  # of the first message, when the conversation has no title
FIRST_MESSAGE_CHARS = 200  # of the first question, read for the list's titles
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

logger = logging.getLogger("h2o_chat.server")


class StoreError(Exception):
    """Base class of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is too busy to answer in time (503)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer h2o-chat; this one refuses to touch it."""


class ConversationBusy(StoreError):
    """Another turn of the conversation is still generating (here or on another replica)."""


def check_schema(found: int, where: str) -> None:
    """Refuse a database whose schema is newer than this code's."""
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database {where} has schema version {found}, newer than this h2o-chat's "
            f"{SCHEMA_VERSION}: upgrade h2o-chat (or point --db elsewhere)"
        )


# -- where the store lives: --db PATH or --db postgresql://...


@dataclass(frozen=True, slots=True)
class SQLiteDatabase:
    """A SQLite file (created with its parent directory)."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """A PostgreSQL connection URL (libpq's ``postgresql://user:password@host:port/dbname``)."""

    url: str

    def __repr__(self) -> str:
        return f"PostgresDatabase({str(self)!r})"

    def __str__(self) -> str:
        """The URL without its password, for logs and messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


Database = SQLiteDatabase | PostgresDatabase


def parse_database(text: str) -> Database:
    """``--db``: a ``postgresql://`` (or ``postgres://``) URL, else the path of a SQLite file."""
    text = text.strip()
    if not text:
        raise ValueError("expected a SQLite file path or a postgresql:// URL, got nothing")
    if text.startswith(POSTGRES_SCHEMES):
        return PostgresDatabase(text)
    if "://" in text:
        scheme = text.partition("://")[0]
        raise ValueError(
            f"unknown database URL scheme {scheme!r}: give a SQLite file path or a "
            "postgresql:// URL"
        )
    return SQLiteDatabase(Path(text).expanduser())


def default_database() -> SQLiteDatabase:
    """The SQLite file under the user's data directory."""
    return SQLiteDatabase(platformdirs.user_data_path("h2o-chat") / "h2o-chat.sqlite3")


# -- the records


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "role": self.role, "content": self.content}


def new_message(role: str, content: str, message_id: str | None = None) -> Message:
    """A message with the id the client chose, or a fresh uuid4."""
    return Message(message_id or str(uuid.uuid4()), role, content)


def new_conversation_id() -> str:
    """24 hex characters from a cryptographic source, like a MongoDB ObjectId."""
    return secrets.token_hex(12)


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
    updated_at: float = 0.0  # the last exchange (or the creation), seconds since the epoch

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


# -- the interface

StopHandler = Callable[[str], Awaitable[object]]
"""Called with a conversation id when another replica asks to stop its generations here."""


class Store(Protocol):
    """Sessions and conversations, awaited from the event loop (never blocking it).

    Every method raises :class:`StoreUnavailable` when the database cannot answer in time.
    """

    @property
    def shared(self) -> bool:
        """Whether other replicas use the same database (stop requests reach them)."""
        ...

    async def close(self) -> None:
        """Release the claims still held, stop the background work, close the database."""
        ...

    async def save_settings(self, session_id: str, settings: Mapping[str, Any]) -> None: ...

    async def create_conversation(self, session_id: str, model: str, preprompt: str | None) -> str:
        """A new conversation's id."""
        ...

    async def conversations(self, session_id: str) -> list[ConversationInfo]:
        """The session's conversations, the most recently active first."""
        ...

    async def conversation(
        self, session_id: str, conversation_id: str
    ) -> StoredConversation | None:
        """The session's conversation with its messages in order, or None."""
        ...

    async def set_title(self, session_id: str, conversation_id: str, title: str) -> bool:
        """Rename the session's conversation; whether it exists."""
        ...

    async def delete_conversation(self, session_id: str, conversation_id: str) -> bool:
        """Delete the session's conversation (its messages and claim go with it)."""
        ...

    async def begin_turn(self, session_id: str, conversation_id: str) -> StoredConversation | None:
        """Claim the session's conversation for one turn and read it under the claim.

        None if it does not exist; :class:`ConversationBusy` if a turn of it is running.
        """
        ...

    async def save_turn(
        self,
        conversation_id: str,
        question: Message,
        answer: Message,
        *,
        replacing: str | None = None,
    ) -> bool:
        """Append a finished exchange in one transaction, while this replica claims the turn.

        ``replacing`` (a retry) first deletes that message and every later one. False, and
        nothing saved, if the conversation was deleted or the claim is no longer ours.
        """
        ...

    async def end_turn(self, conversation_id: str, *, defer: bool = False) -> None:
        """Release this replica's claim on the conversation (nothing if it has none);
        ``defer``: in the background (the database just failed to answer)."""
        ...

    async def turn_running(self, conversation_id: str) -> bool:
        """Whether a live claim on the conversation exists, on any replica."""
        ...

    async def request_stop(self, conversation_id: str) -> None:
        """Ask the other replicas to stop the conversation's generations (a shared store;
        SQLite has no other replica to reach)."""
        ...


class TurnClaims:
    """The claims of one replica (its random ``replica`` id): what both stores share.

    Each claim carries a token of its own, so that deleting a claim that was left behind
    never deletes a newer claim of the same conversation. A store implements :meth:`_claim`
    (claim and read, in the database), :meth:`_renew` and :meth:`_release` (by token), and
    runs :meth:`_keep_claims` in the background. A second turn of a conversation in this
    process is refused here without a round trip; in the database a replica may take over
    its own claim, which is then one left behind.
    """

    def __init__(self) -> None:
        self.replica = secrets.randbits(62) + 1  # positive, fits PostgreSQL's BIGINT
        self._running: dict[str, str] = {}  # conversation id -> the claim of its turn here
        self._unreleased: set[str] = set()  # claims of ended turns not deleted yet: retried
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # clear while stale claims are being dropped
        self._settled.set()

    async def _claim(
        self, session_id: str, conversation_id: str, claim: str
    ) -> StoredConversation | None:
        """Claim the session's conversation in the database and read it (see begin_turn)."""
        raise NotImplementedError

    async def _renew(self, claims: list[str]) -> None:
        """Push the lease of these claims forward."""
        raise NotImplementedError

    async def _release(self, claims: list[str]) -> None:
        """Delete these claims."""
        raise NotImplementedError

    async def begin_turn(self, session_id: str, conversation_id: str) -> StoredConversation | None:
        """Claim the session's conversation for one turn and read it under the claim.

        None if it does not exist; :class:`ConversationBusy` if a turn of it is running.
        """
        if not self._settled.is_set():
            try:
                await asyncio.wait_for(self._settled.wait(), SETTLE_SECONDS)
            except TimeoutError:
                raise StoreUnavailable("database unavailable: claims not settled") from None
        if conversation_id in self._running:
            raise ConversationBusy(conversation_id)
        claim = self._running[conversation_id] = secrets.token_hex(8)
        try:
            conversation = await self._claim(session_id, conversation_id, claim)
        except ConversationBusy:
            del self._running[conversation_id]
            raise
        except BaseException:  # it may have been claimed all the same
            del self._running[conversation_id]
            await self._let_go(claim)
            raise
        if conversation is None:
            del self._running[conversation_id]
        return conversation

    def _claim_of(self, conversation_id: str) -> str | None:
        """The claim of the turn of the conversation running here, if any."""
        return self._running.get(conversation_id)

    def _seen_alive(self) -> bool:
        """Whether other replicas take this one's claims as alive now (the database is
        reachable and knows it), so that a claim left behind would refuse their turns."""
        return False

    async def end_turn(self, conversation_id: str, *, defer: bool = False) -> None:
        """Release this replica's claim on the conversation (nothing if it has none);
        ``defer``: the database just failed to answer (see :meth:`_let_go`)."""
        claim = self._running.pop(conversation_id, None)
        if claim is None:
            return
        if defer:
            await self._let_go(claim)
            return
        try:
            await self._release([claim])
        except BaseException:
            self._left_behind(claim)
            raise

    async def _let_go(self, claim: str) -> None:
        """Release, after a failure, a claim the database may hold: at once if other replicas
        see this one alive (the client's next turn, sent to one of them, would find it and be
        refused), else in the background (and before this replica shows itself alive again:
        see :meth:`_drop_stale_claims`). Never raises for the database."""
        if self._seen_alive():
            try:
                await self._release([claim])
                return
            except Exception as exc:
                logger.debug("claim %s is released once the database answers: %s", claim, exc)
            except BaseException:
                self._left_behind(claim)
                raise
        self._left_behind(claim)

    def _left_behind(self, claim: str) -> None:
        self._unreleased.add(claim)
        self._wake.set()

    async def _keep_claims(self) -> None:
        """Renew the running turns' claims every HEARTBEAT_SECONDS; retry failed releases."""
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + HEARTBEAT_SECONDS
        while True:
            wait = RETRY_SECONDS if self._unreleased else renew_at - loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))
            self._wake.clear()
            try:
                await self._release_left_behind(self._release)
                if loop.time() >= renew_at:
                    renew_at = loop.time() + HEARTBEAT_SECONDS
                    if self._running:
                        await self._renew(list(self._running.values()))
            except StoreUnavailable as exc:
                logger.debug("claims not renewed or released yet: %s", exc)

    async def _release_left_behind(self, release: Callable[[list[str]], Awaitable[None]]) -> None:
        """Delete, with ``release``, the claims that failed releases left behind."""
        claims = set(self._unreleased)
        if claims:
            await release(list(claims))
            self._unreleased -= claims

    async def _drop_stale_claims(
        self, delete_all_but: Callable[[list[str]], Awaitable[None]]
    ) -> None:
        """Delete, with ``delete_all_but(running)``, every claim of this replica but those of
        its running turns: after an outage, before other replicas can see this one alive
        again. New turns here wait until it is done."""
        self._settled.clear()
        try:
            stale = set(self._unreleased)  # ended, so not among the running: deleted below
            await delete_all_but(list(self._running.values()))
            self._unreleased -= stale
        finally:
            self._settled.set()

    async def _release_all(self) -> None:
        """On close: release every claim still held (best effort)."""
        claims = [*self._running.values(), *self._unreleased]
        self._running.clear()
        self._unreleased.clear()
        if claims:
            with contextlib.suppress(StoreUnavailable):
                await self._release(claims)
