"""8. The embedded model under several users at once: continuous batching over the slots."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from dataclasses import dataclass

import httpx
import psutil

from bench import Bench, servers
from bench.report import Row, Section, bars
from bench.stats import summarize
from h2o_chat import AsyncClient
from h2o_chat.server.backends.llamacpp_settings import DEFAULT_CTX_SIZE, EngineSettings

PROMPT = "Write a long story about a dragon who learns to bake bread."
MODEL = "smol"
SPEEDUP_STREAMS = 8
SPEEDUP_TARGET = 1.6  # aggregate at 8 streams over 1, on 2 cores


@dataclass(frozen=True, slots=True)
class Level:
    """One round at one concurrency: tokens, wall time, each stream's TTFT, peak server RSS."""

    streams: int
    tokens: int
    seconds: float
    ttfts: list[float]
    rss: int

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


async def _round(url: str, streams: int, tokens: int) -> tuple[int, float, list[float]]:
    """``streams`` greedy answers at once; total tokens, seconds to the last, each TTFT."""
    limits = httpx.Limits(max_connections=streams * 2)
    async with AsyncClient(url, limits=limits, timeout=600) as client:

        async def one() -> tuple[int, float]:
            conversation = client.conversation(MODEL)
            start = time.perf_counter()
            first, count = 0.0, 0
            answer = conversation.stream(
                PROMPT,
                max_new_tokens=tokens,
                do_sample=False,
                temperature=None,
                repetition_penalty=None,
            )
            async for event in answer:
                if event.token.special:
                    continue
                count += 1
                if count == 1:
                    first = time.perf_counter() - start
            return count, first

        start = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(streams)))
        seconds = time.perf_counter() - start
    return sum(count for count, _ in results), seconds, [ttft for _, ttft in results]


class _PeakRSS:
    """The peak resident memory of a process, sampled every 50 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(bench: Bench) -> Section:
    """Each concurrency ``rounds`` times, in rotating order, after one warm-up round."""
    levels = bench.pick((1, 4, 8, 16), (1, 4))
    tokens, rounds = bench.pick(128, 16), bench.pick(3, 1)
    results: dict[int, list[Level]] = {n: [] for n in levels}
    options = ("--queue-size", str(max(levels)), "--log-level", "warning")
    server = servers.h2o_process(bench.workdir, {MODEL: "builtin"}, *options, cpus=servers.ALL_CPUS)
    with server as running:
        url, pid = running.url, running.process.pid
        asyncio.run(_round(url, max(levels), tokens))  # warm-up: every slot used once
        for round_ in range(rounds):
            for streams in levels[round_ % len(levels) :] + levels[: round_ % len(levels)]:
                with _PeakRSS(pid) as rss:
                    total, seconds, ttfts = asyncio.run(_round(url, streams, tokens))
                results[streams].append(Level(streams, total, seconds, ttfts, rss.peak))
    return _section(results, tokens, rounds)


def _section(results: dict[int, list[Level]], tokens: int, rounds: int) -> Section:
    settings = EngineSettings()
    single = [level.rate for level in results[min(results)]]
    rates = {f"{n} streams": [level.rate for level in runs] for n, runs in results.items()}
    section = Section(
        10,
        "Embedded model, several users at once: continuous batching",
        f"The project's server with the builtin model on its defaults "
        f"({settings.resolved_parallel()} slots of {DEFAULT_CTX_SIZE} tokens, "
        f"{settings.resolved_threads()} threads), {', '.join(map(str, results))} one-turn "
        f"conversations at once from one `AsyncClient` in the measuring process, greedy, "
        f"up to {tokens} new tokens each, the same prompt ({PROMPT!r}); each concurrency "
        f"{rounds} times in rotating order after a warm-up round. Aggregate: every stream's "
        "tokens over the time from the first request to the last token. Time to first token: "
        "from each stream's request, p50 and p99 over every stream of every round. Resident "
        "memory: the server process's peak during the round (sampled every 50 ms). The "
        "speed-up compares aggregates of the same round order, median over rounds.",
        draw=functools.partial(bars, samples=rates, label="aggregate tokens/s"),
    )
    for streams, runs in results.items():
        aggregate = [level.rate for level in runs]
        ttfts = sorted(t for level in runs for t in level.ttfts)
        p50 = ttfts[len(ttfts) // 2]
        p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
        speedup = summarize([a / b for a, b in zip(aggregate, single, strict=True)])
        target, met = "", None
        if streams == SPEEDUP_STREAMS:
            target = f">= {SPEEDUP_TARGET:g}x 1 stream"
            met = speedup.median >= SPEEDUP_TARGET
        peak = max(level.rss for level in runs)
        section.rows.append(
            Row(
                f"{streams} streams: aggregate; TTFT p50 / p99; server RSS",
                f"{summarize(aggregate).show(unit=' tok/s')}; {p50 * 1e3:.0f} / "
                f"{p99 * 1e3:.0f} ms; {peak / 2**20:.0f} MB",
                f"{speedup.show(unit='x')} 1 stream",
                target,
                met,
            )
        )
    if any(row.met is False for row in section.rows):
        section.notes.append(
            "Missed: the two cores are shared with the measuring client and, on this machine, "
            "with other work (see the load average at the time of the run); batching gains "
            "most when the engine has the cores to itself."
        )
    return section
