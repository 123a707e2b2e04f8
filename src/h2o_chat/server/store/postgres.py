"""The PostgreSQL store: one database shared by every gateway replica.

psycopg 3 with an :class:`~psycopg_pool.AsyncConnectionPool` (autocommit; a multi-statement
change runs in one transaction). Timestamps are the database's clock, so replicas on
machines whose clocks differ still order conversations by their real activity.

**Replicas.** Each process is a replica with a random 62-bit id. Besides the pool it keeps
one dedicated connection that

- ``LISTEN``\\ s on :data:`STOP_CHANNEL`: stop-generating sent to any replica is a
  ``NOTIFY`` with the conversation id, and the replica running that generation stops it (the
  answer so far is kept, as when stopped locally);
- holds a session advisory lock keyed by the replica id, for as long as the process lives.
  A turn's claim (``active_turns``, see :mod:`.base`) whose owner's lock can be taken
  (``pg_try_advisory_xact_lock``) belongs to a dead replica: its connection closed when the
  process died, and the claim is free at once rather than when its lease runs out. After
  an outage (the database restarted: every lock is gone) the connection first deletes the
  replica's claims but those of its running turns (the ones it could not release during
  the outage), then takes its lock again, so that no other replica finds them alive (409).
  It also retries, every :data:`LISTEN_RETRY_SECONDS`, the releases that failed since, as it
  is up again before the pool has reconnected.

**Round trips.** A turn costs four: the conversation read, the claim with the read under it,
the save, the release; the statements of each go in one pipeline.

**Outages.** A statement that cannot get a working connection within :data:`WAIT_SECONDS`
raises :class:`StoreUnavailable` (the app answers 503); so does one whose connection the
outage broke. The pool gives up a reconnection attempt after :data:`RECONNECT_SECONDS`, so
that once the database is back the next request connects afresh instead of waiting out a
long backoff. The listening connection reconnects on its own every
:data:`LISTEN_RETRY_SECONDS`, logs the outage once and its end once, and then has the pool
drop the connections the outage broke (rather than checking each one before every use).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from h2o_chat.server.store.base import (
    FIRST_MESSAGE_CHARS,
    LEASE_SECONDS,
    SCHEMA_VERSION,
    ConversationBusy,
    ConversationInfo,
    Message,
    PostgresDatabase,
    StopHandler,
    StoredConversation,
    StoreUnavailable,
    TurnClaims,
    check_schema,
    new_conversation_id,
)

logger = logging.getLogger("h2o_chat.server")

POOL_SIZE = 16  # connections per replica; a statement holds one for milliseconds
WAIT_SECONDS = 3.0  # the longest a request waits for a connection before its 503
CONNECT_SECONDS = 3  # libpq's connect_timeout (a host that does not answer)
RECONNECT_SECONDS = 5.0  # the pool gives a failed reconnection up after this (see above)
LISTEN_RETRY_SECONDS = 0.5
STOP_CHANNEL = "h2o_chat_stop"
MIGRATION_LOCK = 0x68326F63686174  # "h2ochat": one replica migrates at a time
NOW = "extract(epoch FROM clock_timestamp())::float8"
CONNECTION_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": CONNECT_SECONDS,
    "application_name": "h2o-chat",
    # a peer that vanished without closing (a cut network) is noticed within a minute
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

# Each step takes the schema one version up, in the versions' numbering shared with SQLite
# (a PostgreSQL database starts empty, so step 1 creates what SQLite had at version 1).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: sessions, conversations (with title and updated_at), messages
        "CREATE TABLE sessions ("
        " id TEXT PRIMARY KEY, settings JSONB NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE conversations ("
        " id TEXT PRIMARY KEY, session_id TEXT NOT NULL, model TEXT NOT NULL, preprompt TEXT,"
        " created_at DOUBLE PRECISION NOT NULL, title TEXT,"
        " updated_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX conversations_updated ON conversations (session_id, updated_at)",
        "CREATE TABLE messages ("
        " seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL,"
        " conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,"
        " role TEXT NOT NULL, content TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX messages_conversation ON messages (conversation_id, seq)",
    ),
    (  # 2: the claims of running turns (one turn at a time per conversation)
        "CREATE TABLE active_turns ("
        " conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,"
        " replica BIGINT NOT NULL, claim TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]


def _unavailable(exc: psycopg.Error) -> StoreUnavailable:
    return StoreUnavailable(f"database unavailable: {' '.join(str(exc).split())}")


class PostgresStore(TurnClaims):
    """The store in the PostgreSQL database at ``database.url``: open with :meth:`open`."""

    shared = True

    def __init__(self, database: PostgresDatabase, on_stop: StopHandler) -> None:
        super().__init__()
        self.database = database
        self._on_stop = on_stop
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            database.url,
            kwargs=CONNECTION_OPTIONS,
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=WAIT_SECONDS,
            reconnect_timeout=RECONNECT_SECONDS,
            name="h2o-chat",
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listening = asyncio.Event()
        self._connected = False  # the listener is connected: see _seen_alive

    @classmethod
    async def open(cls, database: PostgresDatabase, on_stop: StopHandler) -> PostgresStore:
        """Connect, migrate and start listening; :class:`StoreUnavailable` if the database
        cannot be reached, :class:`SchemaTooNewError` if it is newer than this code."""
        pool_log = logging.getLogger("psycopg.pool")
        if pool_log.level == logging.NOTSET:  # its every reconnection attempt, in 3 lines
            pool_log.setLevel(logging.ERROR)  # our own: the outage once, its end once
        store = cls(database, on_stop)
        try:
            try:  # one connection first: its error says why (the pool's only that it timed out)
                await (
                    await psycopg.AsyncConnection.connect(database.url, **CONNECTION_OPTIONS)
                ).close()
                await store._pool.open(wait=True, timeout=WAIT_SECONDS)
            except psycopg.OperationalError as exc:
                reason = " ".join(str(exc).split())
                raise StoreUnavailable(f"cannot reach the database {database}: {reason}") from exc
            await store._migrate()
            store._spawn(store._listen_forever())
            try:
                await asyncio.wait_for(store._listening.wait(), WAIT_SECONDS)
            except TimeoutError as exc:
                raise StoreUnavailable(f"cannot listen on the database {database}") from exc
        except BaseException:
            await store.close()
            raise
        store._spawn(store._keep_claims())
        return store

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; a database that cannot answer raises StoreUnavailable."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise _unavailable(exc) from exc

    async def _migrate(self) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            if row is None:
                await conn.execute("INSERT INTO schema_version VALUES (0)")
            found = 0 if row is None else int(row[0])
            check_schema(found, str(self.database))
            for statements in MIGRATIONS[found:]:
                for statement in statements:
                    await conn.execute(statement)
            if found < SCHEMA_VERSION:
                await conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
                logger.info("database schema migrated from version %d to %d", found, SCHEMA_VERSION)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self._pool.closed:
            await self._release_all()
        await self._pool.close()

    # -- stop-generating across replicas, and this replica's liveness

    async def _listen_forever(self) -> None:
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.database.url, **CONNECTION_OPTIONS
                )
                async with conn:
                    self._connected = True
                    await conn.execute(f"LISTEN {STOP_CHANNEL}")
                    await self._drop_stale_claims(functools.partial(self._delete_all_but, conn))
                    await conn.execute("SELECT pg_advisory_lock(%s)", (self.replica,))
                    if lost:
                        logger.warning("database reachable again")
                        lost = False
                        with contextlib.suppress(psycopg.Error):
                            await self._pool.check()  # drop the connections it broke
                    self._listening.set()
                    while True:  # the claims failed releases left behind go on this connection
                        async for notify in conn.notifies(timeout=LISTEN_RETRY_SECONDS):
                            self._spawn(self._on_stop(notify.payload))
                        await self._release_left_behind(
                            functools.partial(self._delete_claims, conn)
                        )
            except psycopg.Error as exc:
                if not lost:
                    logger.warning("%s; reconnecting", _unavailable(exc))
                    lost = True
            except Exception:  # never give up listening: the replica's liveness is this
                logger.exception("the database listener failed; reconnecting")
                lost = True
            finally:
                self._connected = False
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def request_stop(self, conversation_id: str) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (STOP_CHANNEL, conversation_id))

    # -- sessions and conversations

    async def save_settings(self, session_id: str, settings: Mapping[str, Any]) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO sessions (id, settings, updated_at) "
                f"VALUES (%s, %s, {NOW}) ON CONFLICT (id) DO UPDATE "
                "SET settings = excluded.settings, updated_at = excluded.updated_at",
                (session_id, Jsonb(dict(settings))),
            )

    async def create_conversation(self, session_id: str, model: str, preprompt: str | None) -> str:
        conversation_id = new_conversation_id()
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO conversations (id, session_id, model, preprompt, created_at, "
                f"updated_at) VALUES (%s, %s, %s, %s, {NOW}, {NOW})",
                (conversation_id, session_id, model, preprompt),
            )
        return conversation_id

    async def conversations(self, session_id: str) -> list[ConversationInfo]:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT id, model, title, updated_at, (SELECT substr(content, 1, %s) "
                "FROM messages m WHERE m.conversation_id = c.id AND role = 'user' "
                "ORDER BY seq LIMIT 1) FROM conversations c WHERE session_id = %s "
                "ORDER BY updated_at DESC, created_at DESC",
                (FIRST_MESSAGE_CHARS, session_id),
            )
            return [ConversationInfo(*row) for row in await cursor.fetchall()]

    async def conversation(
        self, session_id: str, conversation_id: str
    ) -> StoredConversation | None:
        async with self._connection() as conn:
            async with conn.pipeline():
                head, body = await self._queue_read(conn, session_id, conversation_id)
            return await self._read(conversation_id, head, body)

    @staticmethod
    async def _queue_read(
        conn: Connection, session_id: str, conversation_id: str
    ) -> tuple[Cursor, Cursor]:
        """The conversation's statements, sent (in a pipeline) but not yet read."""
        head = await conn.execute(
            "SELECT model, preprompt, title, updated_at FROM conversations "
            "WHERE id = %s AND session_id = %s",
            (conversation_id, session_id),
        )
        body = await conn.execute(
            "SELECT m.id, role, content FROM messages m JOIN conversations c "
            "ON c.id = m.conversation_id WHERE m.conversation_id = %s AND c.session_id = %s "
            "ORDER BY seq",
            (conversation_id, session_id),
        )
        return head, body

    @staticmethod
    async def _read(conversation_id: str, head: Cursor, body: Cursor) -> StoredConversation | None:
        row = await head.fetchone()
        if row is None:
            return None
        messages = tuple(Message(*m) for m in await body.fetchall())
        model, preprompt, title, updated_at = row
        return StoredConversation(conversation_id, model, preprompt, messages, title, updated_at)

    async def set_title(self, session_id: str, conversation_id: str, title: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE conversations SET title = %s WHERE id = %s AND session_id = %s",
                (title, conversation_id, session_id),
            )
            return cursor.rowcount > 0

    async def delete_conversation(self, session_id: str, conversation_id: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM conversations WHERE id = %s AND session_id = %s",
                (conversation_id, session_id),
            )
            return cursor.rowcount > 0

    # -- turns

    async def _claim(
        self, session_id: str, conversation_id: str, claim: str
    ) -> StoredConversation | None:
        # One round trip: the claim (only for the session's own conversation), then the
        # conversation as it stands under it. A claim is taken over only from one whose
        # lease ran out, that this replica left behind, or whose replica is gone (its
        # advisory lock is free; the transaction's own hold of it ends at commit).
        async with self._connection() as conn:
            async with conn.pipeline(), conn.transaction():
                claimed = await conn.execute(
                    "INSERT INTO active_turns AS t (conversation_id, replica, claim, expires_at) "
                    f"SELECT id, %s, %s, {NOW} + %s FROM conversations "
                    "WHERE id = %s AND session_id = %s ON CONFLICT (conversation_id) DO UPDATE "
                    "SET replica = excluded.replica, claim = excluded.claim, "
                    f"expires_at = excluded.expires_at WHERE t.expires_at < {NOW} "
                    "OR t.replica = %s OR pg_try_advisory_xact_lock(t.replica) RETURNING 1",
                    (self.replica, claim, LEASE_SECONDS, conversation_id, session_id, self.replica),
                )
                head, body = await self._queue_read(conn, session_id, conversation_id)
            conversation = await self._read(conversation_id, head, body)
            if conversation is not None and await claimed.fetchone() is None:
                raise ConversationBusy(conversation_id)
            return conversation

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
        # One round trip: each change only while the claim (locked first) is this turn's.
        held = "EXISTS (SELECT 1 FROM active_turns WHERE conversation_id = %s AND claim = %s)"
        async with self._connection() as conn:
            async with conn.pipeline(), conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM active_turns WHERE conversation_id = %s AND claim = %s "
                    "FOR UPDATE",
                    (conversation_id, claim),
                )
                if replacing is not None:
                    await conn.execute(
                        "DELETE FROM messages WHERE conversation_id = %s AND seq >= "
                        "(SELECT MIN(seq) FROM messages WHERE conversation_id = %s AND id = %s) "
                        f"AND {held}",
                        (conversation_id, conversation_id, replacing, conversation_id, claim),
                    )
                await conn.execute(
                    "INSERT INTO messages (id, conversation_id, role, content, created_at) "
                    f"SELECT v.id, %s, v.role, v.content, {NOW} FROM (VALUES (1, %s, %s, %s), "
                    f"(2, %s, %s, %s)) AS v (n, id, role, content) WHERE {held} ORDER BY v.n",
                    (
                        conversation_id,
                        *(question.id, question.role, question.content),
                        *(answer.id, answer.role, answer.content),
                        *(conversation_id, claim),
                    ),
                )
                updated = await conn.execute(
                    f"UPDATE conversations SET updated_at = {NOW} WHERE id = %s AND {held} "
                    "RETURNING 1",
                    (conversation_id, conversation_id, claim),
                )
            # not ours any more: deleted, or taken over; nothing was saved
            return await updated.fetchone() is not None

    def _seen_alive(self) -> bool:
        # Connected, the listener holds (or is about to take again, after it has dropped
        # this replica's stale claims) the lock that tells other replicas this one lives.
        return self._connected

    async def _release(self, claims: list[str]) -> None:
        try:
            async with self._connection() as conn:
                await self._delete_claims(conn, claims)
        except StoreUnavailable:
            if not self._connected:
                raise
            # The database answers the listener, so the outage is over but may have broken
            # the pool's connections: drop those and try once more on a fresh one.
            with contextlib.suppress(psycopg.Error):
                await self._pool.check()
            async with self._connection() as conn:
                await self._delete_claims(conn, claims)

    @staticmethod
    async def _delete_claims(conn: Connection, claims: list[str]) -> None:
        await conn.execute("DELETE FROM active_turns WHERE claim = ANY(%s)", (claims,))

    async def _delete_all_but(self, conn: Connection, running: list[str]) -> None:
        await conn.execute(
            "DELETE FROM active_turns WHERE replica = %s AND NOT claim = ANY(%s)",
            (self.replica, running),
        )

    async def _renew(self, claims: list[str]) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"UPDATE active_turns SET expires_at = {NOW} + %s WHERE claim = ANY(%s)",
                (LEASE_SECONDS, claims),
            )

    async def turn_running(self, conversation_id: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM active_turns WHERE conversation_id = %s "
                f"AND expires_at >= {NOW} AND NOT pg_try_advisory_xact_lock(replica)",
                (conversation_id,),
            )
            return await cursor.fetchone() is not None
