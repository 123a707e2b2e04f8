"""Several replicas on one PostgreSQL: a conversation moves between them, stop-generating
reaches the replica running the answer, a replica dies mid-stream, PostgreSQL restarts under
load. Real ``h2o-chat serve`` processes on 127.0.0.1, driven by the project's client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import h2o_chat
from h2o_chat import errors
from tests.support.backends import token_text
from tests.support.h2o import new_conversation, session_client, session_headers
from tests.support.lab import Lab, RecordProperty, unique
from tests.support.postgres import Cluster, cluster
from tests.support.replicas import replica_locks, replicas

SECTION = "Replicas and the database"
LONG = 2000  # tokens of a "long" answer: 100 s, were it not stopped
PATIENCE = 60.0  # seconds a condition may take before the case fails (never a speed figure)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, postgres: Cluster) -> Iterator[list[Lab]]:
    """Replicas A and B on a fresh database of the session's cluster."""
    with replicas(tmp_path_factory.mktemp("replicas"), postgres.create_database()) as both:
        yield both


def transcript(history: list[tuple[str, str]]) -> str:
    """What the recall engine answers for ``history`` (see tests.support.backends.Recalling)."""
    return " ".join(f"{role}:{'_'.join(content.split())}" for role, content in history)


def wait_until(condition: Callable[[], bool], what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after PATIENCE)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > PATIENCE:
            raise AssertionError(f"still not {what} after {PATIENCE} s")
        time.sleep(0.02)
    return time.monotonic() - started


def stored(url: str, headers: dict[str, str], conversation_id: str) -> list[tuple[str, str]]:
    with session_client(url, headers) as raw:
        messages = raw.get(f"/conversation/{conversation_id}").json()["messages"]
    return [(m["role"], m["content"]) for m in messages]


@pytest.mark.reliability(
    "A conversation moves between replicas",
    section=SECTION,
    did=(
        "Two replicas A and B on one PostgreSQL; one session, a client of each: a "
        "conversation begun on A, then six turns sent alternately through B and A (the "
        "engine answers with the whole history it was given)"
    ),
    expect=(
        "Every answer shows the whole history so far, whichever replica wrote it; the stored "
        "conversation holds the seven exchanges in order"
    ),
)
def test_a_conversation_moves_between_replicas(
    pair: list[Lab], record_property: RecordProperty
) -> None:
    headers = session_headers()
    with (
        h2o_chat.Client(pair[0].url, headers=headers) as on_a,
        h2o_chat.Client(pair[1].url, headers=headers) as on_b,
    ):
        begun = on_a.conversation("recall")
        history: list[tuple[str, str]] = [("user", "turn 0 on A")]
        assert begun.send("turn 0 on A").text == transcript(history)
        history.append(("assistant", transcript(history)))
        assert begun.id is not None
        by_replica = [on_b.conversation("recall", id=begun.id), begun]
        for turn in range(1, 7):
            text = f"turn {turn} on {'BA'[turn % 2 == 0]}"
            history.append(("user", text))
            answer = by_replica[(turn + 1) % 2].send(text).text
            assert answer == transcript(history), turn
            history.append(("assistant", answer))
        record_property("turns", 7)
        assert stored(pair[1].url, headers, begun.id) == history


@pytest.mark.reliability(
    "Stop-generating sent to another replica",
    section=SECTION,
    did=(
        "Async clients of A and B, one session: stream a 2000-token answer from A; after 3 "
        "of its numbered tokens call conversation.stop() through B; then the next turn on B"
    ),
    expect=(
        "B's stop reaches A (LISTEN/NOTIFY): the stream ends early (StreamClosedError with "
        "the partial text); the engine makes at most one more token after the stop was sent; "
        "the partial answer is stored; B's next turn goes through and sees it"
    ),
)
async def test_stop_sent_to_another_replica(
    pair: list[Lab], record_property: RecordProperty
) -> None:
    a, b = pair
    label, headers = unique("long-stop"), session_headers()
    async with (
        h2o_chat.AsyncClient(a.url, headers=headers) as on_a,
        h2o_chat.AsyncClient(b.url, headers=headers) as on_b,
    ):
        conversation = on_a.conversation("recall")
        received: list[str] = []
        stop_sent = stop_returned = 0.0
        with pytest.raises(errors.StreamClosedError) as caught:
            async for event in conversation.stream(label, max_new_tokens=LONG):
                received.append(event.token.text)
                if len(received) == 4:  # the history, then " n0" " n1" " n2"
                    assert conversation.id is not None
                    stop_sent = time.time()
                    await on_b.conversation("recall", id=conversation.id).stop()
                    stop_returned = time.time()
        end = a.wait_for_end(label)
        tokens = [line for line in a.trace(label) if line["event"] == "token"]
        after = [line for line in tokens if line["t"] > stop_sent]
        record_property("tokens received", len(received))
        record_property("generated after the stop was sent", len(after))
        record_property("stop through B returned after (ms)", 1000 * (stop_returned - stop_sent))
        assert received[1:4] == [token_text(i) for i in range(3)]
        assert caught.value.partial_text == "".join(received)
        assert end["how"] in ("closed", "cancelled"), end
        assert len(after) <= 1, after
        assert conversation.id is not None
        partial = caught.value.partial_text
        next_turn = await on_b.conversation("recall", id=conversation.id).send("and then?")
    history = [("user", label), ("assistant", partial), ("user", "and then?")]
    assert next_turn.text == transcript(history)
    assert stored(b.url, headers, conversation.id) == [*history, ("assistant", next_turn.text)]


@pytest.mark.reliability(
    "A replica killed mid-stream",
    section=SECTION,
    did=(
        "Two exchanges of a conversation (one through A, one through B), then a 2000-token "
        "answer streaming from A; after 3 tokens A gets SIGKILL; then the next turn through B"
    ),
    expect=(
        "The client's stream fails (the connection is gone); as soon as PostgreSQL has seen "
        "A's connections close, B takes the next turn (A's claim died with A, no 409 and no "
        "lease to wait out) and its answer sees both completed exchanges and nothing of the "
        "unfinished one; the stored conversation has the three exchanges"
    ),
)
def test_a_replica_killed_mid_stream(
    tmp_path: Path, postgres: Cluster, record_property: RecordProperty
) -> None:
    url = postgres.create_database()
    with replicas(tmp_path, url) as (a, b):
        headers = session_headers()
        with (
            h2o_chat.Client(a.url, headers=headers, max_retries=0) as on_a,
            h2o_chat.Client(b.url, headers=headers) as on_b,
        ):
            through_a = on_a.conversation("recall")
            history = [("user", "one")]
            history.append(("assistant", through_a.send("one").text))
            assert through_a.id is not None
            through_b = on_b.conversation("recall", id=through_a.id)
            history.append(("user", "two"))
            history.append(("assistant", through_b.send("two").text))
            received = 0
            with pytest.raises(errors.H2oError) as caught:
                for _ in through_a.stream(unique("long-killed"), max_new_tokens=LONG):
                    received += 1
                    if received == 3:
                        a.server.process.kill()
                        a.server.process.wait()
            noticed = wait_until(lambda: replica_locks(url) == 1, "rid of A's lock")
            answer = through_b.send("three").text
        record_property("client error", type(caught.value).__name__)
        record_property("PostgreSQL saw A gone after (s)", round(noticed, 3))
        history.append(("user", "three"))
        assert answer == transcript(history)
        history.append(("assistant", answer))
        assert stored(b.url, headers, through_a.id) == history
        assert "Traceback" not in b.server.log()


@dataclass
class Load:
    """What the workers of the restart case saw."""

    committed: dict[int, list[str]] = field(default_factory=dict)  # worker -> its turns, in order
    failed: dict[int, list[str]] = field(default_factory=dict)
    failed_through: set[tuple[int, int]] = field(default_factory=set)  # (worker, replica)
    errors: list[tuple[int, float, str]] = field(default_factory=list)  # replica, seconds, what
    since_restart: dict[tuple[int, int], int] = field(default_factory=dict)  # (worker, replica)
    restarted: bool = False
    done: bool = False


WORKERS = 8


async def _worker(
    index: int, conversation_id: str, clients: list[h2o_chat.AsyncClient], load: Load
) -> None:
    """Turns of one conversation back to back, alternately through A and B, until done."""
    by_replica = [client.conversation("echo", id=conversation_id) for client in clients]
    load.committed[index], load.failed[index] = [], []
    turn = 0
    while not load.done:
        replica = turn % 2
        text = f"w{index}t{turn}"
        turn += 1
        started = time.monotonic()
        try:
            answer = await by_replica[replica].send(text)
        except errors.H2oError as exc:
            load.failed[index].append(text)
            load.failed_through.add((index, replica))
            seconds = time.monotonic() - started
            load.errors.append((replica, seconds, f"{type(exc).__name__}: {exc.message}"))
            await asyncio.sleep(0.05)
            continue
        assert answer.text == text
        load.committed[index].append(text)
        if load.restarted:
            key = (index, replica)
            load.since_restart[key] = load.since_restart.get(key, 0) + 1


async def _until(condition: Callable[[], bool], what: str) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > PATIENCE:
            raise AssertionError(f"still not {what} after {PATIENCE} s")
        await asyncio.sleep(0.05)


@pytest.mark.reliability(
    "PostgreSQL restarted under load",
    section=SECTION,
    did=(
        f"Two replicas on a PostgreSQL of their own; {WORKERS} async clients each send turns "
        "of their own conversation back to back, alternately through A and B (no retries). "
        "PostgreSQL is stopped (fast shutdown) while they run, kept down until every worker "
        "has seen a request fail through each replica, then started again on the same port"
    ),
    expect=(
        "During the outage each request fails on its own within a few seconds with 503 "
        "{'error': 'database unavailable'} (or, for an answer already streaming, an error "
        "event saying it was not saved): no hang, no 409, no traceback in the logs; both "
        "replicas reconnect on their own and every worker's turns go through both again; "
        "every turn whose answer completed is stored, in order"
    ),
)
async def test_postgresql_restarted_under_load(
    tmp_path: Path, record_property: RecordProperty
) -> None:
    with cluster() as database, replicas(tmp_path, database.create_database()) as (a, b):
        headers = session_headers()
        with session_client(a.url, headers) as raw:
            ids = [new_conversation(raw, "echo") for _ in range(WORKERS)]
        load = Load()
        async with (
            h2o_chat.AsyncClient(a.url, headers=headers, max_retries=0) as on_a,
            h2o_chat.AsyncClient(b.url, headers=headers, max_retries=0) as on_b,
        ):
            workers = [
                asyncio.create_task(_worker(i, ids[i], [on_a, on_b], load)) for i in range(WORKERS)
            ]
            try:
                await _until(
                    lambda: all(len(load.committed.get(i, ())) >= 4 for i in range(WORKERS)),
                    "warm",
                )
                before = len(load.errors)
                await asyncio.to_thread(database.stop, "fast")
                outage = time.monotonic()
                await _until(
                    lambda: len(load.failed_through) == 2 * WORKERS,
                    "failing for every worker through each replica",
                )
                await asyncio.to_thread(database.start)
                down = time.monotonic() - outage
                load.restarted = True
                await _until(
                    lambda: all(
                        load.since_restart.get((i, r), 0) >= 3
                        for i in range(WORKERS)
                        for r in (0, 1)
                    ),
                    "serving again through both replicas",
                )
            finally:
                load.done = True
                await asyncio.gather(*workers)
        during = load.errors[before:]
        record_property("PostgreSQL down (s)", round(down, 1))
        record_property("turns committed", sum(map(len, load.committed.values())))
        record_property("requests failed", len(load.errors))
        record_property("slowest failure (s)", round(max(s for _, s, _ in load.errors), 2))
        kinds = sorted({what.split(" from ")[0] for _, _, what in load.errors})
        record_property("failures", "; ".join(kinds))
        assert before == 0, load.errors[:3]
        assert {replica for replica, _, _ in during} == {0, 1}
        for _, _, what in load.errors:
            assert what.endswith("database unavailable"), what
            assert "409" not in what
        with session_client(b.url, headers) as raw:
            for index, conversation_id in enumerate(ids):
                messages = raw.get(f"/conversation/{conversation_id}").json()["messages"]
                questions = [m["content"] for m in messages if m["role"] == "user"]
                kept = [q for q in questions if q in set(load.committed[index])]
                assert kept == load.committed[index], index  # none lost, in order
                unsure = set(questions) - set(load.committed[index])
                assert unsure <= set(load.failed[index]), unsure  # nothing invented
        for replica in (a, b):
            assert "Traceback" not in replica.server.log()
