"""1. Client throughput: tokens per second from a zero-latency, pre-rendered token source."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import pstats
from collections.abc import Callable, Iterator

import httpx
import orjson

from bench import MESSAGES, SEED_MODEL, Bench, seed, servers
from bench.replay import CONVERSATION_ID, synthetic_events
from bench.report import Row, Section, bars
from bench.stats import ratios, summarize, timed
from h2o_chat import AsyncClient, Client, provider
from h2o_chat.protocol import payloads
from h2o_chat.protocol.stream import StreamParser

CHUNK_BYTES = 65536
SEED = "seed's code (requests)"
BARE = "bare httpx reader"
SYNC = "Client.chat_stream"
PARSER = "StreamParser.feed alone, no I/O"
SEED_TARGET = 5.0
BARE_TARGET = 0.9


def bare_reader(http: httpx.Client, tokens: int) -> int:
    """The practical limit: one POST, raw bytes split on newlines, ``orjson`` on data lines."""
    body = orjson.dumps(
        payloads.completion_body("Hello", {"max_new_tokens": tokens}, payloads.new_options())
    )
    count, rest = 0, b""
    headers = {"content-type": "application/json"}
    with http.stream(
        "POST", f"/conversation/{CONVERSATION_ID}", content=body, headers=headers
    ) as r:
        for chunk in r.iter_raw():
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.startswith(b"data:"):
                    orjson.loads(line[5:])["token"]["text"]
                    count += 1
    return count


@contextlib.contextmanager
def _readers(url: str) -> Iterator[dict[str, Callable[[int], int]]]:
    """Each reader, warm: given a token count, read one answer that long and return its count."""
    seed.url = url
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        stack.callback(loop.close)
        client = stack.enter_context(Client(url))
        async_client = loop.run_until_complete(_make_async(url))
        stack.callback(lambda: loop.run_until_complete(async_client.aclose()))
        http = stack.enter_context(httpx.Client(base_url=url))

        def read_seed(n: int) -> int:
            return sum(
                1 for _ in seed._create_completion(SEED_MODEL, MESSAGES, True, max_new_tokens=n)
            )

        def read_sync(n: int) -> int:
            return sum(1 for _ in client.chat_stream(SEED_MODEL, MESSAGES, max_new_tokens=n))

        async def read_async(n: int) -> int:
            events = async_client.chat_stream(SEED_MODEL, MESSAGES, max_new_tokens=n)
            return sum([1 async for _ in events])

        def read_provider(n: int) -> int:
            tokens = provider._create_completion(
                SEED_MODEL, MESSAGES, True, base_url=url, max_new_tokens=n
            )
            return sum(1 for _ in tokens)

        yield {
            SEED: read_seed,
            SYNC: read_sync,
            "AsyncClient.chat_stream": lambda n: loop.run_until_complete(read_async(n)),
            "provider _create_completion": read_provider,
            BARE: functools.partial(bare_reader, http),
        }


async def _make_async(url: str) -> AsyncClient:
    return AsyncClient(url)


def run(bench: Bench) -> Section:
    """Read ``tokens``-long answers with every reader, in rotating order, round after round."""
    tokens, rounds = bench.pick(20000, 2000), bench.pick(7, 2)
    samples: dict[str, list[float]] = {}
    with (
        servers.replay(bench.workdir, CHUNK_BYTES) as url,
        servers.pinned(),
        _readers(url) as readers,
    ):
        names = list(readers)
        for name, read in readers.items():
            got = read(tokens)  # warm-up, and a check that every reader gets every token
            if got != tokens:
                raise RuntimeError(f"{name} read {got} tokens of {tokens}")
            samples[name] = []
        samples[PARSER] = []
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                samples[name].append(timed(functools.partial(readers[name], tokens)))
            samples[PARSER].append(timed(functools.partial(parser_alone, tokens)))
        profile = hot_spots(readers[SYNC], tokens)
    section = Section(
        1,
        "Client throughput",
        f"Each reader streams answers of {tokens:,} tokens from `bench.replay`, a bare "
        "Starlette/uvicorn endpoint that replays the same pre-encoded events (shaped like the "
        "server's `synthetic:N` backend, encoded once with `encode`) in "
        f"{CHUNK_BYTES // 1024} KiB chunks, so the readers are measured rather than the source; "
        f"the endpoint runs on its own core. Tokens per second over {rounds} rounds in rotating "
        "order, after a warm-up read; each figure includes the reader's own requests (the seed: 4 "
        "on a new session; the warm clients: 2; the bare reader: 1). The seed's code is "
        "`bench/seed.py`, as written but for its base URL.",
    )
    for name, values in samples.items():
        vs_seed, vs_bare = ratios(values, samples[SEED]), ratios(values, samples[BARE])
        client = name not in (SEED, BARE, PARSER)
        met = client and vs_seed.median >= SEED_TARGET and vs_bare.median >= BARE_TARGET
        section.rows.append(
            Row(
                f"throughput: {name}",
                summarize(values).show(scale=1e-6, unit=" M tok/s"),
                f"{vs_seed.show(unit='x')} seed; {vs_bare.show(unit='x')} bare",
                f">= {SEED_TARGET:g}x seed, >= {BARE_TARGET:g}x bare" if client else "",
                met if client else None,
            )
        )
    section.draw = functools.partial(bars, samples=samples, label="M tokens/s", scale=1e-6)
    if any(row.met is False for row in section.rows):
        bare_vs_seed = ratios(samples[BARE], samples[SEED]).median
        section.notes += [
            f"Why: cProfile of one `{SYNC}` read of {tokens:,} tokens, own time: {profile}.",
            f"The seed's code reads {summarize(samples[SEED]).median / 1e6:.2f} M tokens/s here "
            f"and the bare reader is {bare_vs_seed:.1f}x the seed, so >= 5x the seed asks for "
            f"{SEED_TARGET / bare_vs_seed:.1f}x the bare reader while delivering typed tokens. "
            "What would close it: less work per event in the functions above (they are the "
            "client's whole cost once the bytes are in), e.g. fewer generator layers between "
            "the parser's lists and the caller.",
        ]
    return section


def parser_alone(tokens: int) -> int:
    """Feed pre-encoded events to a fresh :class:`StreamParser` in the replay's chunks."""
    body = b"".join(synthetic_events(tokens))
    parser = StreamParser()
    return sum(
        len(parser.feed(body[i : i + CHUNK_BYTES])) for i in range(0, len(body), CHUNK_BYTES)
    )


def hot_spots(read: Callable[[int], int], tokens: int, top: int = 6) -> str:
    """The functions where one read spends most of its own time, under cProfile."""
    profile = cProfile.Profile()
    profile.runcall(read, tokens)
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    total: float = stats.total_tt  # type: ignore[attr-defined]
    return ", ".join(
        f"`{name}` ({path.rsplit('/', 1)[-1]}:{line}) {own / total:.0%}"
        for (path, line, name), (_, _, own, _, _) in rows
    )
