"""``h2o-chat serve`` with its defaults: several users at once, memory that stays put."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

import h2o_chat
from h2o_chat import errors
from h2o_chat.server.backends.llamacpp_settings import DEFAULT_CTX_SIZE, EngineSettings
from h2o_chat.server.config import BUILTIN_MODEL_ID
from tests.support.servers import RunningServer, h2o_server

USERS = 16
LONG_ANSWER = 300  # tokens asked of each
RSS_LIMIT = 600 << 20
STORY = "Write a very long story about a dragon who learns to count to one thousand."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default server: nothing but a database given."""
    with h2o_server(tmp_path_factory.mktemp("defaults")) as running:
        yield running


def test_help_shows_the_engine_options() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "h2o_chat", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    help_text = " ".join(help_text.split())
    settings = EngineSettings()
    for option in ("--parallel N", "--threads N", "--ctx-size TOKENS"):
        assert option in help_text
    assert f"(default here: {settings.resolved_parallel()}," in help_text
    assert f"here {settings.resolved_threads()})" in help_text
    assert f"(default {DEFAULT_CTX_SIZE}," in help_text


def test_health_shows_slots_threads_and_context(server: RunningServer) -> None:
    model = httpx.get(server.url + "/healthz").json()["models"][BUILTIN_MODEL_ID]
    settings = EngineSettings()
    assert model["parallel"] == settings.resolved_parallel()
    assert model["threads"] == settings.resolved_threads()
    assert model["ctx_size"] == DEFAULT_CTX_SIZE


async def _answer(client: h2o_chat.AsyncClient, seed: int) -> str:
    try:
        completion = await client.conversation(BUILTIN_MODEL_ID).send(
            STORY, max_new_tokens=LONG_ANSWER, temperature=1.0, seed=seed, details=True
        )
    except errors.GenerationError as exc:
        assert exc.error_type == "overloaded", exc
        assert exc.partial_text == ""  # refused up front, never cut off
        return "overloaded"
    assert completion.finish_reason in ("eos_token", "length"), completion.finish_reason
    return "served"


async def test_sixteen_long_answers_at_once(server: RunningServer, tmp_path: Path) -> None:
    """16 users ask for long answers at once, plus one whose answer cannot fit a slot. Each
    long answer completes or is refused as overloaded before its first token; the one over
    the context gets the validation error at once; resident memory stays under 600 MB."""
    process = psutil.Process(server.process.pid)
    peak = process.memory_info().rss
    done = asyncio.Event()

    async def watch_memory() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=USERS * 2)
    async with h2o_chat.AsyncClient(server.url, limits=limits, timeout=600) as client:
        watcher = asyncio.create_task(watch_memory())
        answers = asyncio.gather(*(_answer(client, seed) for seed in range(USERS)))
        with pytest.raises(errors.GenerationError) as too_long:
            await client.conversation(BUILTIN_MODEL_ID).send(STORY, max_new_tokens=DEFAULT_CTX_SIZE)
        outcomes = await answers
        done.set()
        await watcher
    assert too_long.value.error_type == "validation"
    assert f"must be <= {DEFAULT_CTX_SIZE}" in too_long.value.message
    assert outcomes.count("served") >= EngineSettings().resolved_parallel(), outcomes
    assert peak < RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    assert server.process.poll() is None
