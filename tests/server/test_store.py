"""The stores' semantics, one suite run against SQLite and against PostgreSQL.

Sessions own their conversations; a turn claims its conversation, is saved whole once its
answer ends and only while it holds the claim; a retry replaces in one transaction; the
schema migrates forward and refuses a newer one. Where the stores differ on purpose (a dead
replica's claim, stop requests across processes) the test says which does what.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from h2o_chat.server.store import open_store, postgres, sqlite
from h2o_chat.server.store.base import (
    LEASE_SECONDS,
    SCHEMA_VERSION,
    ConversationBusy,
    Database,
    PostgresDatabase,
    SchemaTooNewError,
    SQLiteDatabase,
    Store,
    StoredConversation,
    StoreUnavailable,
    TurnClaims,
    new_message,
)
from tests.support.postgres import STORES, Cluster

Open = Callable[..., Awaitable[Store]]  # opens another replica's store on the database


@pytest.fixture(params=STORES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return SQLiteDatabase(tmp_path / "store.sqlite3")
    cluster: Cluster = request.getfixturevalue("postgres")
    return PostgresDatabase(cluster.create_database())


class Replica:
    """A replica's runtime, as far as its store sees it: the stop requests it receives."""

    def __init__(self) -> None:
        self.stops: list[str] = []
        self.stopped = asyncio.Event()

    async def on_stop(self, conversation_id: str) -> None:
        self.stops.append(conversation_id)
        self.stopped.set()


@pytest.fixture
async def opened(database: Database) -> AsyncIterator[Open]:
    """Open as many replicas' stores on ``database`` as a test wants; all closed after it."""
    stores: list[Store] = []

    async def open_one(replica: Replica | None = None) -> Store:
        store = await open_store(database, (replica or Replica()).on_stop)
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        await store.close()


@pytest.fixture
async def store(opened: Open) -> Store:
    return await opened()


def raw(database: Database, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement straight on the database (``?`` placeholders), as another program would."""
    if isinstance(database, SQLiteDatabase):
        with contextlib.closing(sqlite3.connect(database.path, isolation_level=None)) as db:
            return db.execute(statement, params).fetchall()
    with psycopg.connect(database.url, autocommit=True) as conn:
        cursor = conn.execute(statement.replace("?", "%s"), params)
        return list(cursor.fetchall()) if cursor.description else []


def session() -> str:
    return str(uuid.uuid4())


async def exchange(store: Store, session_id: str, conversation_id: str, text: str) -> None:
    """One whole turn: claim, save the question and its answer, release."""
    assert await store.begin_turn(session_id, conversation_id) is not None
    question, answer = new_message("user", text), new_message("assistant", text.upper())
    assert await store.save_turn(conversation_id, question, answer)
    await store.end_turn(conversation_id)


# -- sessions and conversations


async def test_a_conversation_belongs_to_its_session(store: Store) -> None:
    mine, theirs = session(), session()
    conversation_id = await store.create_conversation(mine, "echo", "be brief")
    assert len(conversation_id) == 24 and int(conversation_id, 16) >= 0
    stored = await store.conversation(mine, conversation_id)
    assert stored is not None
    assert (stored.id, stored.model, stored.preprompt, stored.messages, stored.title) == (
        conversation_id,
        "echo",
        "be brief",
        (),
        None,
    )
    assert await store.conversation(theirs, conversation_id) is None
    assert await store.conversations(theirs) == []
    assert not await store.set_title(theirs, conversation_id, "mine now")
    assert await store.begin_turn(theirs, conversation_id) is None
    assert not await store.delete_conversation(theirs, conversation_id)
    assert await store.conversation(mine, conversation_id) == stored


async def test_the_list_is_newest_activity_first(store: Store) -> None:
    me = session()
    older = await store.create_conversation(me, "echo", None)
    newer = await store.create_conversation(me, "echo", None)
    empty = await store.create_conversation(me, "echo", None)
    await exchange(store, me, older, "How do lighthouses work at night?")
    await exchange(store, me, newer, "x" * 300)
    assert [c.id for c in await store.conversations(me)] == [newer, older, empty]
    await exchange(store, me, older, "And in the fog?")  # a new exchange moves it up
    assert await store.set_title(me, newer, "Renamed")  # a rename does not
    listing = await store.conversations(me)
    assert [(c.id, c.title) for c in listing] == [(older, None), (newer, "Renamed"), (empty, None)]
    assert listing[0].first_message == "How do lighthouses work at night?"
    assert listing[1].first_message == "x" * 200  # the start only, for a title
    assert listing[2].first_message is None
    assert listing[0].updated_at > listing[1].updated_at > listing[2].updated_at


async def test_settings_are_kept_per_session(store: Store, database: Database) -> None:
    me = session()
    await store.save_settings(me, {"activeModel": "echo", "ethicsModalAccepted": False})
    await store.save_settings(me, {"activeModel": "five", "ethicsModalAccepted": True})
    await store.save_settings(session(), {"activeModel": "echo"})
    (settings,) = raw(database, "SELECT settings FROM sessions WHERE id = ?", (me,))[0]
    if isinstance(settings, str):  # SQLite keeps the JSON text, PostgreSQL a JSONB value
        settings = orjson.loads(settings)
    assert settings == {"activeModel": "five", "ethicsModalAccepted": True}


async def test_a_deleted_conversation_takes_its_messages_and_claim(
    store: Store, database: Database
) -> None:
    me = session()
    conversation_id = await store.create_conversation(me, "echo", None)
    await exchange(store, me, conversation_id, "hello")
    assert await store.begin_turn(me, conversation_id) is not None
    assert await store.delete_conversation(me, conversation_id)
    assert not await store.delete_conversation(me, conversation_id)
    assert await store.conversation(me, conversation_id) is None
    question, answer = new_message("user", "late"), new_message("assistant", "LATE")
    assert not await store.save_turn(conversation_id, question, answer)  # nothing to save to
    await store.end_turn(conversation_id)
    for table in ("messages", "active_turns"):
        rows = raw(database, f"SELECT * FROM {table} WHERE conversation_id = ?", (conversation_id,))
        assert rows == []


# -- turns


async def test_a_turn_is_saved_whole_and_in_order(store: Store) -> None:
    me = session()
    conversation_id = await store.create_conversation(me, "echo", None)
    before = await store.conversation(me, conversation_id)
    assert before is not None
    claimed = await store.begin_turn(me, conversation_id)
    assert claimed == before  # read under the claim
    question = new_message("user", "first", str(uuid.uuid4()))
    answer = new_message("assistant", "FIRST")
    assert await store.save_turn(conversation_id, question, answer)
    await store.end_turn(conversation_id)
    await exchange(store, me, conversation_id, "second")
    after = await store.conversation(me, conversation_id)
    assert after is not None
    assert [(m.role, m.content) for m in after.messages] == [
        ("user", "first"),
        ("assistant", "FIRST"),
        ("user", "second"),
        ("assistant", "SECOND"),
    ]
    assert after.messages[:2] == (question, answer)  # the ids the client chose
    assert after.updated_at > before.updated_at


async def test_a_retry_replaces_the_message_and_every_later_one(store: Store) -> None:
    me = session()
    conversation_id = await store.create_conversation(me, "echo", None)
    for text in ("one", "two", "three"):
        await exchange(store, me, conversation_id, text)
    stored = await store.conversation(me, conversation_id)
    assert stored is not None
    retried = stored.messages[2]  # the question "two"
    assert await store.begin_turn(me, conversation_id) is not None
    question, answer = new_message("user", "two again"), new_message("assistant", "TWO AGAIN")
    assert await store.save_turn(conversation_id, question, answer, replacing=retried.id)
    await store.end_turn(conversation_id)
    after = await store.conversation(me, conversation_id)
    assert after is not None
    assert [m.content for m in after.messages] == ["one", "ONE", "two again", "TWO AGAIN"]


async def test_one_turn_at_a_time_on_every_replica(opened: Open) -> None:
    here, there = await opened(), await opened()  # two replicas on one database
    me = session()
    conversation_id = await here.create_conversation(me, "echo", None)
    assert await here.begin_turn(me, conversation_id) is not None
    assert await there.turn_running(conversation_id)
    for store in (here, there):
        with pytest.raises(ConversationBusy):
            await store.begin_turn(me, conversation_id)
    question, answer = new_message("user", "q"), new_message("assistant", "a")
    assert not await there.save_turn(conversation_id, question, answer)  # not its claim
    await there.end_turn(conversation_id)  # not its claim either: nothing released
    assert await here.turn_running(conversation_id)
    assert await here.save_turn(conversation_id, question, answer)
    await here.end_turn(conversation_id)
    assert not await there.turn_running(conversation_id)
    assert await there.begin_turn(me, conversation_id) is not None
    await there.end_turn(conversation_id)


async def test_claims_raced_from_two_replicas_go_to_one(opened: Open) -> None:
    here, there = await opened(), await opened()
    me = session()
    ids = [await here.create_conversation(me, "echo", None) for _ in range(10)]

    async def claim(store: Store, conversation_id: str) -> bool:
        try:
            return await store.begin_turn(me, conversation_id) is not None
        except ConversationBusy:
            return False

    for conversation_id in ids:
        won = await asyncio.gather(*(claim(s, conversation_id) for s in (here, there) * 2))
        assert sum(won) == 1, won


async def test_a_claim_whose_lease_ran_out_is_taken_over(opened: Open, database: Database) -> None:
    stalled, healthy = await opened(), await opened()
    me = session()
    conversation_id = await stalled.create_conversation(me, "echo", None)
    assert await stalled.begin_turn(me, conversation_id) is not None
    # The stalled replica stopped renewing: its lease ran out.
    raw(database, "UPDATE active_turns SET expires_at = expires_at - ?", (2 * LEASE_SECONDS,))
    assert not await healthy.turn_running(conversation_id)
    assert await healthy.begin_turn(me, conversation_id) is not None
    question, answer = new_message("user", "late"), new_message("assistant", "LATE")
    assert not await stalled.save_turn(conversation_id, question, answer)  # no longer its turn
    assert await healthy.save_turn(conversation_id, question, answer)
    stored = await healthy.conversation(me, conversation_id)
    assert stored is not None and len(stored.messages) == 2


async def test_the_claim_of_a_replica_that_died(store: Store, database: Database) -> None:
    """A claim by a replica whose process is gone: on PostgreSQL it is free at once (the dead
    replica's advisory lock went with its connection); SQLite waits for the lease to run out."""
    me = session()
    conversation_id = await store.create_conversation(me, "echo", None)
    dead_replica = 12345  # holds no lock: no such process
    raw(
        database,
        "INSERT INTO active_turns (conversation_id, replica, claim, expires_at) "
        "VALUES (?, ?, 'dead', ?)",
        (conversation_id, dead_replica, 4e9),  # a lease that runs out in 2096
    )
    if store.shared:
        assert not await store.turn_running(conversation_id)
        assert await store.begin_turn(me, conversation_id) is not None
    else:
        assert await store.turn_running(conversation_id)
        with pytest.raises(ConversationBusy):
            await store.begin_turn(me, conversation_id)


async def test_closing_releases_the_claims_held(opened: Open, database: Database) -> None:
    leaving, staying = await opened(), await opened()
    me = session()
    conversation_id = await leaving.create_conversation(me, "echo", None)
    assert await leaving.begin_turn(me, conversation_id) is not None
    await leaving.close()
    assert raw(database, "SELECT * FROM active_turns") == []
    assert await staying.begin_turn(me, conversation_id) is not None


async def test_stop_requests_reach_the_other_replicas(opened: Open) -> None:
    running, asking = Replica(), Replica()
    here = await opened(running)
    there = await opened(asking)
    await there.request_stop("0123456789abcdef01234567")
    if here.shared:  # PostgreSQL: LISTEN/NOTIFY
        await asyncio.wait_for(running.stopped.wait(), 10)
        assert running.stops == ["0123456789abcdef01234567"]
    else:  # SQLite serves one process: nobody else to tell
        assert running.stops == []


# -- the schema


def schema_version(database: Database) -> int:
    if isinstance(database, SQLiteDatabase):
        return int(raw(database, "PRAGMA user_version")[0][0])
    return int(raw(database, "SELECT version FROM schema_version")[0][0])


async def test_a_new_database_is_at_the_latest_version(opened: Open, database: Database) -> None:
    await opened()
    await opened()  # a second replica opening it changes nothing
    assert schema_version(database) == SCHEMA_VERSION


def write_version_1(database: Database) -> None:
    """The schema as the server wrote it before turns were claimed, with one exchange."""
    if isinstance(database, SQLiteDatabase):
        with contextlib.closing(sqlite3.connect(database.path, isolation_level=None)) as db:
            db.executescript(sqlite.SCHEMA)
            for statement in sqlite.MIGRATIONS[0]:
                db.execute(statement)
            db.execute("PRAGMA user_version = 1")
    else:
        with psycopg.connect(database.url, autocommit=True) as conn:
            for statement in postgres.MIGRATIONS[0]:
                conn.execute(statement)
            conn.execute("CREATE TABLE schema_version (version INTEGER)")
            conn.execute("INSERT INTO schema_version VALUES (1)")
    raw(database, "INSERT INTO sessions VALUES ('s', '{}', 1.0)")
    raw(database, "INSERT INTO conversations VALUES ('a', 's', 'm', 'be brief', 100.0, 'T', 300.0)")
    raw(
        database,
        "INSERT INTO messages (id, conversation_id, role, content, created_at) "
        "VALUES ('q', 'a', 'user', 'old question', 300.0), "
        "('r', 'a', 'assistant', 'old answer', 300.0)",
    )


async def test_a_database_of_the_previous_version_opens_and_keeps_everything(
    opened: Open, database: Database
) -> None:
    write_version_1(database)
    store = await opened()
    assert schema_version(database) == SCHEMA_VERSION
    old = await store.conversation("s", "a")
    assert old is not None
    assert (old.preprompt, old.title, old.updated_at) == ("be brief", "T", 300.0)
    assert [(m.id, m.content) for m in old.messages] == [
        ("q", "old question"),
        ("r", "old answer"),
    ]
    await exchange(store, "s", "a", "new question")  # turns work on the migrated database
    again = await store.conversation("s", "a")
    assert again is not None and len(again.messages) == 4


async def test_a_newer_schema_is_refused(opened: Open, database: Database) -> None:
    store = await opened()
    await store.close()
    if isinstance(database, SQLiteDatabase):
        raw(database, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        raw(database, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNewError) as refused:
        await open_store(database, Replica().on_stop)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this h2o-chat's" in str(refused.value)
    assert schema_version(database) == SCHEMA_VERSION + 1  # untouched


# -- SQLite only

# The schema as the server wrote it before conversations had titles (version 0).
SCHEMA_0 = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, settings TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    model TEXT NOT NULL,
    preprompt TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX conversations_session ON conversations (session_id);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, seq);
"""


async def test_a_sqlite_file_from_before_titles_opens_and_keeps_everything(
    tmp_path: Path,
) -> None:
    database = SQLiteDatabase(tmp_path / "old.sqlite3")
    with contextlib.closing(sqlite3.connect(database.path, isolation_level=None)) as db:
        db.executescript(SCHEMA_0)
        db.execute("INSERT INTO sessions VALUES ('s', '{}', 1.0)")
        db.execute("INSERT INTO conversations VALUES ('a' , 's', 'm', 'be brief', 100.0)")
        db.execute("INSERT INTO conversations VALUES ('b' , 's', 'm', NULL, 200.0)")
        db.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, created_at) "
            "VALUES (?, 'a', ?, ?, ?)",
            [("q", "user", "old question", 300.0), ("r", "assistant", "old answer", 300.0)],
        )
    store = await open_store(database, Replica().on_stop)
    try:
        # a's last exchange (300) is newer than b's creation (200)
        assert [(c.id, c.title, c.updated_at) for c in await store.conversations("s")] == [
            ("a", None, 300.0),
            ("b", None, 200.0),
        ]
        old = await store.conversation("s", "a")
        assert old is not None
        assert (old.preprompt, [m.content for m in old.messages]) == (
            "be brief",
            ["old question", "old answer"],
        )
        assert await store.set_title("s", "a", "Renamed")
        await exchange(store, "s", "b", "new")
        assert [(c.id, c.title) for c in await store.conversations("s")] == [
            ("b", None),
            ("a", "Renamed"),
        ]
    finally:
        await store.close()
    await (await open_store(database, Replica().on_stop)).close()  # again: nothing changes
    assert schema_version(database) == SCHEMA_VERSION
    assert raw(database, "SELECT title FROM conversations WHERE id = 'a'") == [("Renamed",)]


async def test_sqlite_waits_for_a_locked_file_off_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the file's write lock: a write waits for it on the storage
    thread while the event loop goes on running (before, the whole server froze)."""
    database = SQLiteDatabase(tmp_path / "locked.sqlite3")
    store = await open_store(database, Replica().on_stop)
    release, held = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with contextlib.closing(sqlite3.connect(database.path, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait()
            db.execute("COMMIT")

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        await asyncio.to_thread(held.wait)
        write = asyncio.create_task(store.create_conversation("s", "echo", None))
        ticks = 0
        while ticks < 20:  # the loop keeps turning while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        release.set()
        conversation_id = await write
        assert await store.conversation("s", conversation_id) is not None
    finally:
        release.set()
        await asyncio.to_thread(holder.join)
        await store.close()


# -- the claims' bookkeeping, over a table in memory whose database can be taken away


class Flaky(TurnClaims):
    """TurnClaims over ``rows`` (conversation -> (replica, claim)); ``down`` fails every call."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[int, str]] = {}
        self.down = False
        self.alive = False  # what other replicas see: see _seen_alive
        self.lost_answer = False  # a claim is made, but its answer is lost on the way back

    def _seen_alive(self) -> bool:
        return self.alive

    def _reach(self) -> None:
        if self.down:
            raise StoreUnavailable("database unavailable: down for the test")

    async def _claim(
        self, session_id: str, conversation_id: str, claim: str
    ) -> StoredConversation | None:
        self._reach()
        owner = self.rows.get(conversation_id)
        if owner is not None and owner[0] != self.replica:
            raise ConversationBusy(conversation_id)
        self.rows[conversation_id] = (self.replica, claim)
        if self.lost_answer:
            raise StoreUnavailable("database unavailable: the connection broke")
        return StoredConversation(conversation_id, "echo", None, ())

    async def _renew(self, claims: list[str]) -> None:
        self._reach()

    async def _release(self, claims: list[str]) -> None:
        self._reach()
        for conversation_id, (_, claim) in list(self.rows.items()):
            if claim in claims:
                del self.rows[conversation_id]


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_second_turn_here_is_refused_without_asking_the_database() -> None:
    claims = Flaky()
    assert await claims.begin_turn("s", "x") is not None
    claims.down = True
    with pytest.raises(ConversationBusy):
        await claims.begin_turn("s", "x")


async def test_a_failed_release_is_retried_and_never_deletes_a_newer_claim() -> None:
    claims = Flaky()
    keeper = asyncio.create_task(claims._keep_claims())
    try:
        assert await claims.begin_turn("s", "x") is not None
        first = claims.rows["x"][1]
        claims.down = True
        with pytest.raises(StoreUnavailable):
            await claims.end_turn("x")
        assert claims.rows["x"][1] == first  # left behind
        claims.down = False
        assert await claims.begin_turn("s", "x") is not None  # its own: taken over
        second = claims.rows["x"][1]
        assert second != first
        await until(lambda: not claims._unreleased)  # the late release of the first...
        assert claims.rows["x"][1] == second  # ...left the new claim alone
        await claims.end_turn("x")
        assert claims.rows == {}
    finally:
        keeper.cancel()


async def test_a_deferred_release_goes_in_the_background() -> None:
    claims = Flaky()
    keeper = asyncio.create_task(claims._keep_claims())
    try:
        assert await claims.begin_turn("s", "x") is not None
        claims.down = True
        await claims.end_turn("x", defer=True)  # no second wait on a database just failed
        assert "x" in claims.rows
        claims.down = False
        await until(lambda: "x" not in claims.rows)
        assert await claims.begin_turn("s", "x") is not None
    finally:
        keeper.cancel()


async def test_a_release_is_not_deferred_while_other_replicas_see_this_one_alive() -> None:
    # The save failed, but the database is back: a claim left behind now would refuse the
    # client's next turn on another replica (409) until the background retry.
    claims = Flaky()
    assert await claims.begin_turn("s", "x") is not None
    claims.alive = True
    await claims.end_turn("x", defer=True)
    assert claims.rows == {}
    assert not claims._unreleased


async def test_a_claim_whose_answer_was_lost_is_released_while_seen_alive() -> None:
    # A connection the outage broke, with the database back: the claim may have been made.
    claims = Flaky()
    claims.alive = claims.lost_answer = True
    with pytest.raises(StoreUnavailable):
        await claims.begin_turn("s", "x")
    assert claims.rows == {}
    claims.alive = False  # not seen alive: left for the background
    with pytest.raises(StoreUnavailable):
        await claims.begin_turn("s", "x")
    assert "x" in claims.rows
    assert claims._unreleased
