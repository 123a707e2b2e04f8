"""8. TGI's ``/generate_stream`` against the H2o conversation route: same server, same engine."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
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


ROUTES = {"h2o": _h2o, "tgi": _tgi}


async def _seconds(route: str, http: httpx.AsyncClient, tokens: int, repeat: int) -> float:
    """Seconds of ``repeat`` answers of ``tokens`` tokens each, one after another."""
    return sum([await ROUTES[route](http, tokens) for _ in range(repeat)])


async def measure(bench: Bench) -> dict[str, dict[str, list[float]]]:
    """Per workload, tokens/s (long answers) or requests/s (short ones) of both routes,
    interleaved round by round."""
    rounds = bench.pick(7, 2)
    long_tokens, short_requests = bench.pick(MAX_TOKENS, 1000), bench.pick(200, 20)
    results: dict[str, dict[str, list[float]]] = {
        "long": {"h2o": [], "tgi": []},
        "short": {"h2o": [], "tgi": []},
    }
    options = ("--log-level", "warning")
    with (
        servers.h2o(bench.workdir, {MODEL: f"synthetic:{MAX_TOKENS}"}, *options) as url,
        servers.pinned(),
    ):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await http.get("/")
            for route in ("h2o", "tgi"):  # warm-up
                await _seconds(route, http, long_tokens, 1)
                await _seconds(route, http, SHORT_TOKENS, 5)
            for _ in range(rounds):
                for route in ("h2o", "tgi"):
                    seconds = await _seconds(route, http, long_tokens, 1)
                    results["long"][route].append(long_tokens / seconds)
                    seconds = await _seconds(route, http, SHORT_TOKENS, short_requests)
                    results["short"][route].append(short_requests / seconds)
    return results


def run(bench: Bench) -> Section:
    """Both routes of one server on one core, in turn; the reader on the other core."""
    results = asyncio.run(measure(bench))
    long_tokens = bench.pick(MAX_TOKENS, 1000)
    section = Section(
        8,
        "TGI's /generate_stream vs the H2o route",
        f"The same `h2o-chat serve` (`synthetic:{MAX_TOKENS}`, on the server core) answers "
        f"through both routes in turn, round by round: one answer of {long_tokens} tokens "
        f"(tokens per second), and {SHORT_TOKENS}-token answers one after another (requests "
        "per second, each timed from its POST to its last event). The H2o route streams a "
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
