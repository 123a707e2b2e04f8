"""5. Server: tokens/s delivered at 1, 10 and 100 concurrent streams, vs a bare SSE endpoint."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING

import httpx

from bench import Bench, servers
from bench.replay import CONVERSATION_ID, synthetic_events
from bench.report import Row, Section, medians_and_spread
from bench.stats import ratios, summarize
from h2o_chat.protocol import payloads

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODEL = "bench"
MAX_TOKENS = 8000  # the synthetic backend's context is 8192
TARGET = 0.8


async def read_stream(http: httpx.AsyncClient, conversation_id: str, tokens: int) -> int:
    """POST one turn and count the ``data:`` lines of its answer, as raw bytes."""
    body = payloads.completion_body("Hello", {"max_new_tokens": tokens}, payloads.new_options())
    count, tail = 0, b""
    async with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
        async for chunk in response.aiter_raw():
            count += (tail + chunk).count(b"data:")
            tail = chunk[-4:]
    return count


async def tokens_per_second(http: httpx.AsyncClient, ids: list[str], tokens: int) -> float:
    """Read one answer per conversation id, all at once; total tokens over wall time."""
    start = time.perf_counter()
    counts = await asyncio.gather(*(read_stream(http, i, tokens) for i in ids))
    seconds = time.perf_counter() - start
    if sum(counts) != tokens * len(ids):
        raise RuntimeError(f"read {sum(counts)} tokens of {tokens * len(ids)}")
    return sum(counts) / seconds


async def new_conversations(http: httpx.AsyncClient, count: int) -> list[str]:
    """Fresh conversations on the project's server (each turn's history stays empty)."""
    answers = [await http.post("/conversation", json={"model": MODEL}) for _ in range(count)]
    return [answer.raise_for_status().json()["conversationId"] for answer in answers]


async def measure(bench: Bench, levels: dict[int, int]) -> dict[int, dict[str, list[float]]]:
    """Per level (concurrent streams -> tokens each): tokens/s of both servers, interleaved."""
    rounds = bench.pick(3, 1)
    results: dict[int, dict[str, list[float]]] = {}
    # idle connections expire before uvicorn's 5 s keep-alive closes them: no reuse race
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2)
    options = ("--queue-size", "200", "--log-level", "warning")
    with (
        servers.h2o(bench.workdir, {MODEL: f"synthetic:{MAX_TOKENS}"}, *options) as h2o_url,
        servers.replay(bench.workdir, chunk_bytes=0) as bare_url,
        servers.pinned(),
    ):
        async with (
            httpx.AsyncClient(base_url=h2o_url, limits=limits, timeout=120) as h2o,
            httpx.AsyncClient(base_url=bare_url, limits=limits, timeout=120) as bare,
        ):
            await h2o.get("/")
            same = await _same_events(h2o, bare)
            for streams, tokens in levels.items():
                results[streams] = {"project server": [], "bare endpoint": []}
                await tokens_per_second(bare, [CONVERSATION_ID] * streams, tokens)  # warm-up
                await tokens_per_second(h2o, await new_conversations(h2o, streams), tokens)
                for _ in range(rounds):
                    ids = await new_conversations(h2o, streams)
                    bare_ids = [CONVERSATION_ID] * streams
                    results[streams]["bare endpoint"].append(
                        await tokens_per_second(bare, bare_ids, tokens)
                    )
                    results[streams]["project server"].append(
                        await tokens_per_second(h2o, ids, tokens)
                    )
    if not same:
        raise RuntimeError("the bare endpoint's events differ from the project server's")
    return results


async def _same_events(h2o: httpx.AsyncClient, bare: httpx.AsyncClient) -> bool:
    """Whether both servers send byte-identical answers for the same request."""
    (conversation_id,) = await new_conversations(h2o, 1)
    body = payloads.completion_body("Hello", {"max_new_tokens": 50}, payloads.new_options())
    ours = await h2o.post(f"/conversation/{conversation_id}", json=body)
    theirs = await bare.post(f"/conversation/{CONVERSATION_ID}", json=body)
    return ours.content == theirs.content == b"".join(synthetic_events(50))


def run(bench: Bench) -> Section:
    """Both servers on the same core, in turn; the load generator on the other core."""
    total = bench.pick(20000, 2000)
    levels = {streams: min(MAX_TOKENS, total // streams) for streams in (1, 10, 100)}
    results = asyncio.run(measure(bench, levels))
    section = Section(
        5,
        "Server throughput vs a bare SSE endpoint",
        "Tokens per second delivered to 1, 10 and 100 concurrent streams (tokens per stream: "
        + ", ".join(f"{n} at {s}" for s, n in levels.items())
        + ") by the project's server (`synthetic:N`, one fresh conversation per stream, created "
        "before the clock starts) and by `bench.replay` with one event per ASGI message, a bare "
        "Starlette/uvicorn SSE endpoint emitting byte-identical events (checked), both on the "
        "same core in turn. The load generator is a raw httpx reader counting `data:` lines, on "
        "the other core. The project's server runs one generation per model at a time, so its "
        "concurrent streams queue; the bare endpoint interleaves them.",
        draw=functools.partial(_draw, results),
    )
    for streams, by_server in results.items():
        ratio = ratios(by_server["project server"], by_server["bare endpoint"])
        section.rows.append(
            Row(
                f"server tokens/s, {streams} concurrent",
                summarize(by_server["project server"]).show(unit=" tok/s"),
                f"{ratio.show(unit='x')} bare ({summarize(by_server['bare endpoint']).show()})",
                f">= {TARGET:g}x bare",
                ratio.median >= TARGET,
            )
        )
    if any(row.met is False for row in section.rows):
        section.notes += [
            "Why (a cProfile of the server under 100 streams of 200 tokens, taken by hand; "
            "SQLite already runs with `synchronous=NORMAL` and stores a turn in one "
            "transaction): per token the server costs about what the bare endpoint does, which "
            "is why 1 and 10 streams reach 1x; what remains is per turn. The project's server "
            "generates one answer per model at a time (the issue's design: a real model serves "
            "one generation at a time), so 100 streams run one after another, each paying its "
            "request, conversation lookup, validation, queue hand-off and save (a few hundred "
            "microseconds) against only ~2 ms of tokens; the bare endpoint interleaves all 100 "
            "and pays none of that.",
            "What would close it: let engines that batch (the synthetic one, an upstream such as "
            "vLLM) run several generations at once behind the same queue, so short answers "
            "overlap as they do on the bare endpoint (storage is off the event loop already: "
            "section 8).",
        ]
    return section


def _draw(results: dict[int, dict[str, list[float]]], ax: Axes) -> None:
    levels = list(results)
    for name in ("bare endpoint", "project server"):
        medians, errors = medians_and_spread([results[level][name] for level in levels])
        ax.errorbar(levels, medians, yerr=errors, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("tokens/s (median, IQR)")
    ax.legend()
