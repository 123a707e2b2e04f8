"""8. Replicas on one PostgreSQL (200 streams over two vs one), and SQLite off the event loop vs
on it (100 streams, with and without a second process holding the file's write lock)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import sqlite3
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench import Bench, servers
from bench.paced import TICK_SECONDS
from bench.report import Row, Section, medians_and_spread
from bench.stats import ratios, summarize
from h2o_chat.protocol import payloads
from tests.support.postgres import cluster
from tests.support.servers import free_port

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODEL = "bench"
MAX_TOKENS = 8000  # the synthetic backend's context is 8192
REPLICA_STREAMS = 200
SQLITE_STREAMS = 100
LOCK_SECONDS = 0.1  # the other process holds the write lock this long, then lets go as long
TURN_TOKENS = 10  # per turn of (b): 10 paced tokens, about 1 s
OPTIONS = ("--queue-size", "200", "--log-level", "warning")
LIMITS = httpx.Limits(max_connections=400, max_keepalive_connections=400, keepalive_expiry=2)


@dataclass
class Streams:
    """One round of concurrent streams: tokens per second, and a stream's longest pause (the
    median over the streams of the longest gap between two of its token events)."""

    tokens_per_s: float
    pause: float


async def _read(http: httpx.AsyncClient, conversation_id: str, tokens: int) -> tuple[int, float]:
    """One turn: how many events came, and the longest gap between two that carried tokens
    (the wait in the queue before the first, and the save before the last, left out)."""
    body = payloads.completion_body("Hello", {"max_new_tokens": tokens}, payloads.new_options())
    count, arrivals, tail = 0, list[float](), b""
    async with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        async for chunk in response.aiter_raw():
            count += (tail + chunk).count(b"data:")
            tail = chunk[-4:]
            arrivals.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(arrivals[:-1])]
    return count, max(gaps, default=0.0)


async def _round(clients: Sequence[httpx.AsyncClient], streams: int, tokens: int) -> Streams:
    """``streams`` fresh conversations spread over ``clients`` (replicas), read all at once."""
    ids = []
    for index in range(streams):  # created before the clock starts
        answer = await clients[index % len(clients)].post("/conversation", json={"model": MODEL})
        ids.append(answer.raise_for_status().json()["conversationId"])
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_read(clients[i % len(clients)], ids[i], tokens) for i in range(streams))
    )
    seconds = time.perf_counter() - start
    counts = sum(count for count, _ in results)
    if counts != streams * tokens:
        raise RuntimeError(f"read {counts} tokens of {streams * tokens}")
    return Streams(counts / seconds, statistics.median(pause for _, pause in results))


@contextlib.asynccontextmanager
async def _clients(urls: Sequence[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client of each replica, with its session."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for url in urls:
            client = httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=300)
            clients.append(await stack.enter_async_context(client))
        for client in clients:
            await client.get("/")  # the session cookie
        yield clients


@dataclass
class Results:
    replicas: dict[str, list[float]] = field(default_factory=dict)  # tokens/s per round
    sqlite: dict[str, list[Streams]] = field(default_factory=dict)


async def _replicas(bench: Bench, tokens: int, rounds: int, results: Results) -> None:
    """One replica and two on one PostgreSQL, and one on SQLite, interleaved round by round."""
    models = {MODEL: f"synthetic:{MAX_TOKENS}"}
    with cluster() as database, contextlib.ExitStack() as stack:
        url = database.create_database()

        def start(cpus: str, db: str | None = None) -> str:
            server = servers.h2o(bench.workdir, models, *OPTIONS, cpus=cpus, db=db)
            return stack.enter_context(server)

        setups = {
            "one replica, PostgreSQL": [start("1", url)],
            "two replicas, PostgreSQL": [start("0", url), start("1", url)],
            "one replica, SQLite": [start("1")],
        }
        for name, urls in setups.items():
            results.replicas[name] = []
            async with _clients(urls) as clients:
                await _round(clients, REPLICA_STREAMS, bench.pick(tokens, 1))  # warm-up
        for _ in range(rounds):
            for name, urls in setups.items():
                async with _clients(urls) as clients:
                    outcome = await _round(clients, REPLICA_STREAMS, tokens)
                results.replicas[name].append(outcome.tokens_per_s)


@contextlib.contextmanager
def _lock_holder(path: Path) -> Iterator[None]:
    """Another process's writes: the file's write lock held LOCK_SECONDS out of every two."""
    done = threading.Event()

    def hold() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as db:
            while not done.is_set():
                db.execute("BEGIN IMMEDIATE")
                time.sleep(LOCK_SECONDS)
                db.execute("COMMIT")
                time.sleep(LOCK_SECONDS)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


async def _sustained(http: httpx.AsyncClient, workers: int, tokens: int, seconds: float) -> Streams:
    """``workers`` conversations, each sending turns back to back for ``seconds``, so that
    turns start and end (and touch the database) while others stream."""
    ids = []
    for _ in range(workers):  # created before the clock starts
        answer = await http.post("/conversation", json={"model": MODEL})
        ids.append(answer.raise_for_status().json()["conversationId"])
    deadline = time.perf_counter() + seconds
    pauses: list[float] = []

    async def worker(conversation_id: str) -> int:
        count = 0
        while time.perf_counter() < deadline:
            events, pause = await _read(http, conversation_id, tokens)
            count += events
            pauses.append(pause)
        return count

    start = time.perf_counter()
    counts = await asyncio.gather(*(worker(i) for i in ids))
    return Streams(sum(counts) / (time.perf_counter() - start), statistics.median(pauses))


async def _sqlite(bench: Bench, seconds: float, rounds: int, results: Results) -> None:
    """The store's thread vs the same statements on the event loop, same core, in turn."""
    models = {MODEL: "python:bench.paced:paced"}
    with contextlib.ExitStack() as stack:
        paths = {
            "storage thread": bench.workdir / f"thread-{free_port()}.db",
            "on the event loop": bench.workdir / f"loop-{free_port()}.db",
        }
        module = {"storage thread": "h2o_chat", "on the event loop": "bench.inline_sqlite"}
        urls = {
            name: stack.enter_context(
                servers.h2o(bench.workdir, models, *OPTIONS, db=str(path), module=module[name])
            )
            for name, path in paths.items()
        }
        for name in paths:
            for contended in (False, True):
                results.sqlite[_label(name, contended)] = []
        for _ in range(rounds):
            for contended in (False, True):
                for name, path in paths.items():
                    holder = _lock_holder(path) if contended else contextlib.nullcontext()
                    async with _clients([urls[name]]) as (http,):
                        with holder:
                            outcome = await _sustained(http, SQLITE_STREAMS, TURN_TOKENS, seconds)
                    results.sqlite[_label(name, contended)].append(outcome)


def _label(name: str, contended: bool) -> str:
    return f"{name}, {'file locked half the time' if contended else 'quiet file'}"


def run(bench: Bench) -> Section:
    rounds = bench.pick(3, 1)
    replica_tokens = bench.pick(200, 10)
    seconds = bench.pick(4.0, 1.0)
    results = Results()
    with servers.pinned(servers.ALL_CPUS):
        asyncio.run(_replicas(bench, replica_tokens, rounds, results))
    with servers.pinned():
        asyncio.run(_sqlite(bench, seconds, rounds, results))
    section = Section(
        9,
        "Replicas on one PostgreSQL; SQLite off the event loop",
        f"(a) {REPLICA_STREAMS} concurrent streams of {replica_tokens} tokens (`synthetic`, one "
        "fresh conversation each, created before the clock starts, spread evenly over the "
        "replicas) against one replica pinned to core 1, two replicas on one PostgreSQL "
        "pinned to cores 0 and 1, and one replica on SQLite, round by round; the load "
        "generator and PostgreSQL (fsync off, a throwaway cluster) share both cores. "
        f"(b) {SQLITE_STREAMS} conversations at once, each sending turns of {TURN_TOKENS} tokens "
        f"back to back for {seconds:g} s (so that turns begin and end, and touch the database, "
        "while others stream), from an engine that paces a token every "
        f"{TICK_SECONDS * 1000:.0f} ms and runs every answer at once (`bench.paced`), against a "
        "server whose SQLite statements run on the store's own thread and against the same "
        "server with them run on the event loop, as before (`bench.inline_sqlite`), both on "
        "core 1 in turn: on a quiet file, then while another process holds the file's write "
        f"lock {LOCK_SECONDS * 1000:.0f} ms out of every {2 * LOCK_SECONDS * 1000:.0f} ms. A "
        "turn's longest pause is the longest gap between two of its token events (the save "
        "before the final event left out); the figure is its median over the turns.",
        draw=functools.partial(_draw, results),
    )
    one = results.replicas["one replica, PostgreSQL"]
    for name, samples in results.replicas.items():
        versus = "" if samples is one else f"{ratios(samples, one).show(unit='x')} one replica"
        section.rows.append(Row(f"{REPLICA_STREAMS} streams: {name}", _tps(samples), versus))
    for contended in (False, True):
        loop = results.sqlite[_label("on the event loop", contended)]
        thread = results.sqlite[_label("storage thread", contended)]
        faster = ratios([s.tokens_per_s for s in thread], [s.tokens_per_s for s in loop])
        for name, runs in (("on the event loop", loop), ("storage thread", thread)):
            pauses = summarize([s.pause for s in runs])
            section.rows.append(
                Row(
                    f"{SQLITE_STREAMS} streams, SQLite {_label(name, contended)}",
                    f"{_tps([s.tokens_per_s for s in runs])}; a turn's longest pause "
                    f"{pauses.show(scale=1000, unit=' ms')}",
                    "" if runs is loop else f"{faster.show(unit='x')} on the loop",
                )
            )
    return section


def _tps(samples: list[float]) -> str:
    return summarize(samples).show(unit=" tok/s")


def _draw(results: Results, ax: Axes) -> None:
    names = list(results.replicas)
    medians, errors = medians_and_spread([results.replicas[n] for n in names])
    ax.barh(names, medians, xerr=errors)
    ax.invert_yaxis()
    ax.set_xlabel(f"tokens/s, {REPLICA_STREAMS} streams (median, IQR)")
