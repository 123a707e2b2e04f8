"""3. Time to first token: a warm client's overhead over a bare httpx POST on a warm connection."""

from __future__ import annotations

import time

import httpx
import orjson

from bench import SEED_MODEL, Bench, servers
from bench.replay import CONVERSATION_ID
from bench.report import Row, Section
from bench.stats import differences, summarize
from h2o_chat import Client, Conversation
from h2o_chat.protocol import payloads

TOKENS = 16
CHUNK_BYTES = 65536
TARGET_MS = 1.0


def client_ttft(conversation: Conversation) -> float:
    """Seconds from the call to the first typed event of a follow-up turn (then read the rest)."""
    start = time.perf_counter()
    events = conversation.stream("Hello", max_new_tokens=TOKENS)
    next(events)
    elapsed = time.perf_counter() - start
    for _ in events:
        pass
    return elapsed


def bare_ttft(http: httpx.Client) -> float:
    """Seconds from the POST to the first decoded ``data:`` line (then read the rest)."""
    body = payloads.completion_body("Hello", {"max_new_tokens": TOKENS}, payloads.new_options())
    start = time.perf_counter()
    elapsed, rest = 0.0, b""
    with http.stream("POST", f"/conversation/{CONVERSATION_ID}", json=body) as response:
        for chunk in response.iter_raw():
            if elapsed:
                continue
            rest += chunk
            line, newline, _ = rest.partition(b"\n")
            if newline:
                orjson.loads(line.removeprefix(b"data:"))
                elapsed = time.perf_counter() - start
    return elapsed


def run(bench: Bench) -> Section:
    """Both, interleaved, ``rounds`` times against the replay endpoint on its own core."""
    rounds = bench.pick(300, 20)
    client_times: list[float] = []
    bare_times: list[float] = []
    with (
        servers.replay(bench.workdir, CHUNK_BYTES) as url,
        servers.pinned(),
        Client(url) as client,
        httpx.Client(base_url=url) as http,
    ):
        conversation = client.conversation(SEED_MODEL)
        for _ in range(5):  # warm both: session, conversation, connection
            client_ttft(conversation)
            bare_ttft(http)
        for _ in range(rounds):
            client_times.append(client_ttft(conversation))
            bare_times.append(bare_ttft(http))
    overhead = differences(client_times, bare_times)
    section = Section(
        3,
        "Time to first token, warm",
        f"{rounds} interleaved pairs against `bench.replay` (answers of {TOKENS} tokens): a "
        "follow-up turn of a warm `Conversation` (one request, on a kept-alive connection) from "
        "the call to its first typed event, vs a bare `httpx.Client.stream` POST of the same body "
        "on a warm connection to its first `orjson`-decoded `data:` line. Each is read to the end "
        "so that its connection stays in the pool.",
        [
            Row("TTFT: bare httpx POST", summarize(bare_times).show(scale=1e3, unit=" ms")),
            Row(
                "TTFT: warm Conversation.stream",
                summarize(client_times).show(scale=1e3, unit=" ms"),
            ),
            Row(
                "TTFT overhead of the client",
                overhead.show(scale=1e3, unit=" ms"),
                "client minus bare, per pair",
                f"< {TARGET_MS:g} ms",
                overhead.median * 1e3 < TARGET_MS,
            ),
        ],
    )
    return section
