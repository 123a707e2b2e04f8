"""The builtin model (SmolLM2 in llama.cpp) under abandonment and overload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import h2o_chat
from h2o_chat import errors
from tests.support.h2o import session_headers
from tests.support.lab import Lab, RecordProperty, abandon, lab, still_serving

MODEL = "smol"
# One slot, so that one long answer makes the model busy (the default has several).
MODELS = ("--model", f"{MODEL}=builtin", "--model", "echo=synthetic", "--parallel", "1")
STORY = "Write a very long story about a dragon who learns to count to one thousand."
# A long answer (seeded sampling runs the whole length): about 40 s if left to run.
LONG: dict[str, Any] = {"max_new_tokens": 2000, "temperature": 1.0, "seed": 7}
LIVENESS_SECONDS = 10.0
QUEUE_SIZE = 2
BURST = 10
ROUNDS = 5
RSS_SLACK = 32 << 20  # bytes of growth allowed from the second round to the last


def _overloaded(client: h2o_chat.Client) -> bool:
    """Ask for one token: True if the model is busy and its queue full, False if answered."""
    try:
        client.conversation(MODEL).send("Hi", max_new_tokens=1)
    except errors.GenerationError as exc:
        if exc.error_type != "overloaded":
            raise
        return True
    return False


@pytest.mark.reliability(
    "Client disconnects mid-stream (builtin model)",
    section="Server faults",
    did=(
        "Builtin model, --parallel 1 --queue-size 0: stream a long story (2000 tokens asked, "
        "seeded), check the model is busy (a second request is 'overloaded'), read 3 tokens, "
        "close the connection, then ask for one token until served"
    ),
    expect=(
        "The model is free again at once: a one-token answer completes within seconds of the "
        "disconnect (the abandoned answer had ~40 s to go); the server keeps serving"
    ),
)
def test_disconnect_frees_the_builtin_model(
    tmp_path: Path, record_property: RecordProperty
) -> None:
    with (
        lab(tmp_path, *MODELS, "--queue-size", "0") as running,
        h2o_chat.Client(running.url, headers=session_headers()) as client,
        h2o_chat.Client(running.url, headers=session_headers()) as other,
    ):
        stream = client.conversation(MODEL).stream(STORY, **LONG)
        received = [event.token.text for _, event in zip(range(3), stream, strict=False)]
        busy_before = _overloaded(other)
        abandon(stream)
        left, attempts = time.monotonic(), 1
        while _overloaded(other) and time.monotonic() - left < LIVENESS_SECONDS:
            attempts += 1
            time.sleep(0.02)
        freed_after = time.monotonic() - left
        record_property("tokens read", len(received))
        record_property("one-token answer done after (s)", freed_after)
        record_property("attempts until served", attempts)
        assert busy_before, "the long answer should still be running"
        assert freed_after < LIVENESS_SECONDS
        still_serving(running.url)


@pytest.fixture(scope="module")
def builtin_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab(tmp_path_factory.mktemp("builtin"), *MODELS, "--queue-size", str(QUEUE_SIZE)) as run:
        yield run


async def _ask(client: h2o_chat.AsyncClient, seed: int) -> str:
    """``served`` or ``overloaded``; any other outcome fails the test."""
    try:
        completion = await client.conversation(MODEL).send(
            "Count from one to twenty.", max_new_tokens=24, temperature=1.0, seed=seed
        )
    except errors.GenerationError as exc:
        assert exc.error_type == "overloaded", exc
        assert exc.partial_text == ""
        return "overloaded"
    assert completion.tokens  # the client raises unless the final event arrived
    return "served"


@pytest.mark.reliability(
    "Builtin model: more requests than the queue holds",
    section="Load",
    did=(
        f"Builtin model, --parallel 1 --queue-size {QUEUE_SIZE}: {ROUNDS} rounds of {BURST} "
        "concurrent answers (24 tokens each); server RSS after every round"
    ),
    expect=(
        "Each request is either answered whole or gets the 'overloaded' error event at once; "
        f"at least 1 + {QUEUE_SIZE} answered per round; the server stays up; RSS flat "
        "(no growth beyond 32 MiB after the first round)"
    ),
)
async def test_queue_overflow_and_flat_memory(
    builtin_lab: Lab, record_property: RecordProperty
) -> None:
    limits = httpx.Limits(max_connections=BURST * 2, max_keepalive_connections=BURST * 2)
    rss: list[int] = []
    outcomes: list[list[str]] = []
    async with h2o_chat.AsyncClient(builtin_lab.url, limits=limits, timeout=120) as client:
        for round_ in range(ROUNDS):
            seeds = range(round_ * BURST, (round_ + 1) * BURST)
            outcomes.append(await asyncio.gather(*(_ask(client, seed) for seed in seeds)))
            rss.append(builtin_lab.rss())
    served = [o.count("served") for o in outcomes]
    overloaded = [o.count("overloaded") for o in outcomes]
    record_property("answered per round", served)
    record_property("overloaded per round", overloaded)
    record_property("server RSS per round (MiB)", [round(r / 2**20, 1) for r in rss])
    assert all(n >= 1 + QUEUE_SIZE for n in served), served
    assert sum(overloaded) >= ROUNDS, overloaded
    assert builtin_lab.server.process.poll() is None
    assert max(rss[1:]) - rss[1] < RSS_SLACK, rss
    still_serving(builtin_lab.url)
