"""11. An upstream engine through the server vs straight to it (1 and 32 streams at once), and
one model on two engine replicas vs one (32 streams)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import statistics
import time
from dataclasses import dataclass

import httpx
import orjson

from bench import Bench, servers
from bench.report import Row, Section, bars
from bench.stats import differences, ratios, summarize
from h2o_chat import weights

PROMPT = "Write a long story about a dragon who learns to bake bread."
MESSAGES = [{"role": "user", "content": PROMPT}]
TARGET = 0.95  # the server in front keeps 95% of the engine's tokens/s
DIRECT = "(a) llama.cpp server direct"
ONE = "(b) project server -> (a)"
TWO = "(c) project server -> (a) + a 2nd replica"
SLOTS = 8  # each engine's, and the requests the server sends each engine at once
ENGINE = ("--threads", "1", "--parallel", str(SLOTS))  # an engine on a core of its own

Case = tuple[str, int]  # a way and how many streams at once


@dataclass(frozen=True, slots=True)
class Round:
    """Streams at once: the tokens received, the seconds from the first request to the last
    token, each stream's time to first token."""

    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    @property
    def ttft(self) -> float:
        """The median stream's."""
        return statistics.median(self.ttfts)


async def _stream(http: httpx.AsyncClient, model: str, tokens: int) -> tuple[int, float]:
    """One greedy answer over the OpenAI API: its content chunks and time to the first."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 0.0}
    start = time.perf_counter()
    count, first = 0, 0.0
    async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    count += 1
                    first = first or time.perf_counter() - start
    return count, first


async def _round(http: httpx.AsyncClient, model: str, streams: int, tokens: int) -> Round:
    start = time.perf_counter()
    results = await asyncio.gather(*(_stream(http, model, tokens) for _ in range(streams)))
    seconds = time.perf_counter() - start
    return Round(sum(count for count, _ in results), seconds, [ttft for _, ttft in results])


async def _measure(
    ways: dict[str, tuple[str, str]], cases: list[Case], tokens: int, rounds: int
) -> dict[Case, list[Round]]:
    """Each case ``rounds`` times in rotating order, every way over a client of its own, after
    a warm-up round of each way at the most streams (every slot and connection used once)."""
    most = max(streams for _, streams in cases)
    limits = httpx.Limits(max_connections=2 * most, max_keepalive_connections=2 * most)
    samples: dict[Case, list[Round]] = {case: [] for case in cases}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, (url, model) in ways.items():
            http = httpx.AsyncClient(base_url=url, timeout=600, limits=limits)
            clients[name] = await stack.enter_async_context(http)
            await _round(clients[name], model, most, 4)
        for round_ in range(rounds):
            for name, streams in cases[round_ % len(cases) :] + cases[: round_ % len(cases)]:
                model = ways[name][1]
                samples[name, streams].append(await _round(clients[name], model, streams, tokens))
    return samples


def run(bench: Bench) -> Section:
    levels = bench.pick((1, 32), (1, 4))
    tokens, rounds = bench.pick(64, 8), bench.pick(3, 1)
    most = max(levels)
    path = weights.ensure()
    options = ("--queue-size", str(2 * most), "--upstream-parallel", str(SLOTS))
    with (
        servers.llama_server(bench.workdir, path, *ENGINE, cpus="0") as first,
        servers.llama_server(bench.workdir, path, *ENGINE, cpus="1") as second,
        servers.h2o(
            bench.workdir,
            {"one": f"{first}/v1#smol", "two": f"{first}/v1#smol,{second}/v1#smol"},
            *options,
            "--log-level",
            "warning",
            cpus="1",
        ) as gateway,
        servers.pinned("1"),
    ):
        ways = {DIRECT: (first, "smol"), ONE: (gateway, "one"), TWO: (gateway, "two")}
        cases = [(way, n) for n in levels for way in (DIRECT, ONE)] + [(TWO, most)]
        samples = asyncio.run(_measure(ways, cases, tokens, rounds))
    return _section(samples, levels, tokens, rounds)


def _section(
    samples: dict[Case, list[Round]], levels: tuple[int, ...], tokens: int, rounds: int
) -> Section:
    most = max(levels)
    rates = {f"{way}, {n}": [r.rate for r in runs] for (way, n), runs in samples.items()}
    section = Section(
        11,
        "Upstream engines: through the server vs direct, two replicas vs one",
        f"The same chat message ({PROMPT!r}), greedy, up to {tokens} new tokens, "
        f"{' and '.join(map(str, levels))} streams at once from one `httpx.AsyncClient` "
        "over the OpenAI API (`/v1/chat/completions`, streamed, the same body and parsing for "
        "every way); each case in rotating order, "
        f"{rounds} rounds after a warm-up each, one client per way, its connections kept. "
        "(a) llama.cpp's own server from the `xllamacpp` wheel (`python -m "
        f"tests.support.engines`: {SLOTS} slots, 1 thread) pinned to core 0, a core of its own "
        "as an engine would have a machine of its own; (b) the project's server with (a) as "
        f"its OpenAI-compatible upstream (`--upstream-parallel {SLOTS}`: the rest waits in its "
        "queue as it would in the engine's); (c) the same with a second such engine, pinned "
        "to core 1, as a replica of the same model (comma-separated URLs). The project's server "
        "and the measuring client are pinned to core 1. Tokens/s: every stream's tokens over "
        "the time from the first request to the last token. TTFT: the median stream's, from "
        "its request to its first token.",
        draw=functools.partial(bars, samples=rates, label="tokens/s, all streams"),
    )
    for n in levels:
        direct, through = samples[DIRECT, n], samples[ONE, n]
        kept = ratios([r.rate for r in through], [r.rate for r in direct])
        section.rows += [
            Row(f"{n} streams: tokens/s, {DIRECT}", _rate(direct)),
            Row(
                f"{n} streams: tokens/s, {ONE}",
                _rate(through),
                f"{kept.show(unit='x')} (a)",
                f">= {TARGET:g}x (a)",
                kept.median >= TARGET,
            ),
            _ttft(f"{n} streams: TTFT, (a) / (b)", direct, through, "(b) - (a)"),
        ]
    one, two = samples[ONE, most], samples[TWO, most]
    scaled = ratios([r.rate for r in two], [r.rate for r in one])
    section.rows += [
        Row(f"{most} streams: tokens/s, {TWO}", _rate(two), f"{scaled.show(unit='x')} (b)"),
        _ttft(f"{most} streams: TTFT, (b) / (c)", one, two, "(c) - (b)"),
    ]
    section.notes.append(
        "Two replicas have twice the cores of one, as engines on machines of their own would; "
        "here the second engine shares its core with the server and the measuring client, so "
        "(c) falls short of twice (b)."
    )
    if any(row.met is False for row in section.rows):
        section.notes.append(
            "Missed: each token crosses one more process and two more sockets through the "
            "server (the upstream's chunk parsed, the event sent), and the server shares its "
            "core with the measuring client; see the machine's load at the time of the run."
        )
    return section


def _rate(runs: list[Round]) -> str:
    return summarize([r.rate for r in runs]).show(unit=" tok/s")


def _ttft(name: str, first: list[Round], second: list[Round], versus: str) -> Row:
    """Both ways' TTFT and their difference, in seconds once it is over one (a queue's wait)."""
    times = [summarize([r.ttft for r in runs]) for runs in (first, second)]
    scale, unit = (1.0, " s") if times[0].median >= 1.0 else (1e3, " ms")
    gap = differences([r.ttft for r in second], [r.ttft for r in first])
    both = " / ".join(summary.show(scale=scale, unit=unit) for summary in times)
    return Row(name, both, f"{gap.show(scale=scale, unit=unit)} {versus}")
