"""8. TGI's ``/generate_stream`` against the H2o conversation route: same server, same engine."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from bench import Bench, servers
from bench.report import Row, Section, bars
from bench.stats import ratios, summarize
from h2o_chat.protocol import payloads

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MODEL = "bench"
MAX_TOKENS = 8000  # the synthetic backend's context is 8192
SHORT_TOKENS = 16
TARGET = 0.9  # the TGI route must cost no more than 10% over the H2o route


async def _count(http: httpx.AsyncClient, path: str, body: Mapping[str, Any]) -> int:
    """POST one request and count the ``data:`` lines of its answer, as raw bytes."""
    count, tail = 0, b""
    async with http.stream("POST", path, json=body) as response:
        async for chunk in response.aiter_raw():
            count += (tail + chunk).count(b"data:")
            tail = chunk[-4:]
    return count


async def _timed(http: httpx.AsyncClient, path: str, body: Mapping[str, Any], tokens: int) -> float:
    """Seconds from the POST to the last event of its answer (of ``tokens`` events)."""
    start = time.perf_counter()
    count = await _count(http, path, body)
    seconds = time.perf_counter() - start
    if count != tokens:
        raise RuntimeError(f"read {count} events of {tokens} from {path}")
    return seconds


async def _h2o(http: httpx.AsyncClient, tokens: int) -> float:
    """A turn of a fresh conversation (created before the clock starts)."""
    created = await http.post("/conversation", json={"model": MODEL})
    path = f"/conversation/{created.raise_for_status().json()['conversationId']}"
    body = payloads.completion_body("Hello", {"max_new_tokens": tokens}, payloads.new_options())
    return await _timed(http, path, body, tokens)


async def _tgi(http: httpx.AsyncClient, tokens: int) -> float:
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": tokens}}
    return await _timed(http, "/generate_stream", body, tokens)


Route = Callable[[httpx.AsyncClient, int], Awaitable[float]]
ROUTES: dict[str, Route] = {"h2o": _h2o, "tgi": _tgi}


def _in_turn(number: int) -> list[tuple[str, Route]]:
    """Both routes, the first one first in even turns and second in odd ones: the answer after
    another pays some of its clean-up (measured: about 15%), so each route takes both places."""
    pairs = list(ROUTES.items())
    return pairs if number % 2 == 0 else pairs[::-1]


async def measure(bench: Bench) -> dict[str, dict[str, list[float]]]:
    """Per workload and route, tokens/s (one long answer) or requests/s (short answers), one
    figure a round; the two routes alternate answer by answer, so that a busy machine slows
    both alike."""
    rounds = bench.pick(7, 2)
    long_tokens, short_answers = bench.pick(MAX_TOKENS, 1000), bench.pick(200, 20)
    results: dict[str, dict[str, list[float]]] = {"long": {}, "short": {}}
    for by_route in results.values():
        by_route.update((route, []) for route in ROUTES)
    options = ("--log-level", "warning")
    with (
        servers.h2o(bench.workdir, {MODEL: f"synthetic:{MAX_TOKENS}"}, *options) as url,
        servers.pinned(),
    ):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await http.get("/")
            for _ in range(5):  # warm-up
                for answer in ROUTES.values():
                    await answer(http, SHORT_TOKENS)
            for number in range(rounds):
                for route, answer in _in_turn(number):
                    results["long"][route].append(long_tokens / await answer(http, long_tokens))
                seconds = dict.fromkeys(ROUTES, 0.0)
                for pair in range(short_answers):
                    for route, answer in _in_turn(pair):
                        seconds[route] += await answer(http, SHORT_TOKENS)
                for route in ROUTES:
                    results["short"][route].append(short_answers / seconds[route])
    return results


def run(bench: Bench) -> Section:
    """Both routes of one server on one core, in turn; the reader on the other core."""
    results = asyncio.run(measure(bench))
    long_tokens = bench.pick(MAX_TOKENS, 1000)
    section = Section(
        8,
        "TGI's /generate_stream vs the H2o route",
        f"The same `h2o-chat serve` (`synthetic:{MAX_TOKENS}`, on the server core) answers "
        f"through both routes, answer by answer, each first in every other pair (the second "
        f"answer of a pair pays some of the first's clean-up), in {bench.pick(7, 2)} rounds: one "
        f"answer of {long_tokens} tokens (tokens per second), and {bench.pick(200, 20)} "
        f"{SHORT_TOKENS}-token answers (requests per second, each timed from its POST to its "
        "last event). The H2o route streams a "
        "turn of a fresh conversation (created before the clock starts) and stores it when it "
        "ends; `/generate_stream` takes `inputs` and stores nothing. The reader is a raw httpx "
        "client counting `data:` lines, on the other core.",
        draw=functools.partial(_draw, results),
    )
    units = {
        "long": ("tokens/s, one long answer", " tok/s"),
        "short": ("requests/s, short answers", " req/s"),
    }
    for workload, (label, unit) in units.items():
        by_route = results[workload]
        ratio = ratios(by_route["tgi"], by_route["h2o"])
        section.rows.append(
            Row(
                f"/generate_stream {label}",
                summarize(by_route["tgi"]).show(unit=unit),
                f"{ratio.show(unit='x')} the H2o route ({summarize(by_route['h2o']).show()})",
                f">= {TARGET:g}x the H2o route",
                ratio.median >= TARGET,
            )
        )
    return section


def _draw(results: dict[str, dict[str, list[float]]], ax: Axes) -> None:
    long = results["long"]
    bars(ax, {"H2o route": long["h2o"], "/generate_stream": long["tgi"]}, "tokens/s, one answer")
