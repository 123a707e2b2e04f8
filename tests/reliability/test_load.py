"""200 concurrent streams for a minute (``--load-seconds``): every token, in order, every time."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

import h2o_chat
from h2o_chat import errors
from h2o_chat.protocol.types import END_OF_TEXT
from tests.support.lab import Lab, RecordProperty, lab, still_serving

STREAMS = 200
WORDS = 16


@pytest.fixture(scope="module")
def load_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The synthetic echo model with a queue deep enough for every stream."""
    tmp = tmp_path_factory.mktemp("load")
    with lab(tmp, "--model", "echo=synthetic", "--queue-size", str(STREAMS)) as running:
        yield running


async def _streams(
    client: h2o_chat.AsyncClient,
    worker: int,
    deadline: float,
    ttfts: list[float],
    failures: list[errors.H2oError],
) -> int:
    """New conversations, one after the other until ``deadline``; each answer checked whole.

    A stream that fails with the client's error is kept in ``failures`` and the next one
    starts; tokens out of order fail the test at once.
    """
    streams = 0
    while time.monotonic() < deadline:
        words = [f"s{worker}r{streams}w{i}" for i in range(WORDS)]
        expected = [words[0], *(" " + word for word in words[1:]), END_OF_TEXT]
        started, texts = time.monotonic(), list[str]()
        streams += 1
        try:
            async for event in client.conversation("echo").stream(" ".join(words)):
                if not texts:
                    ttfts.append(time.monotonic() - started)
                texts.append(event.token.text)
                final = event
        except errors.H2oError as exc:
            failures.append(exc)
            continue
        assert texts == expected, (worker, streams, texts)
        assert final.generated_text == " ".join(words)
    return streams


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@pytest.mark.reliability(
    f"{STREAMS} concurrent streams (synthetic)",
    section="Load",
    did=(
        f"One AsyncClient (pool raised to {STREAMS}, default retries), {STREAMS} tasks each "
        "streaming new conversations back to back for --load-seconds (60 by default); the "
        f"echo engine answers {WORDS} numbered words (s<task>r<round>w<i>)"
    ),
    expect=(
        "Every stream completes, every token arrives in order (exact list checked), no "
        "stream fails; time to first token (call to first event, conversation creation "
        "included), requests the client resent before an answer, and server RSS reported"
    ),
)
async def test_concurrent_streams(
    load_lab: Lab,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    record_property: RecordProperty,
) -> None:
    seconds = float(request.config.getoption("--load-seconds"))
    limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
    ttfts: list[float] = []
    failures: list[errors.H2oError] = []
    rss_before = load_lab.rss()
    caplog.set_level(logging.INFO, logger="h2o_chat")  # the client logs every resend
    async with h2o_chat.AsyncClient(load_lab.url, limits=limits) as client:
        started = time.monotonic()
        deadline = started + seconds
        results = await asyncio.gather(
            *(_streams(client, worker, deadline, ttfts, failures) for worker in range(STREAMS))
        )
        elapsed = time.monotonic() - started
    started_streams = sum(results)
    completed = started_streams - len(failures)
    record_property("seconds", round(elapsed, 1))
    record_property("streams", started_streams)
    record_property("completed", completed)
    record_property("tokens checked", completed * (WORDS + 1))
    record_property("streams/s", completed / elapsed)
    if ttfts:
        record_property("TTFT p50 (ms)", 1000 * statistics.median(ttfts))
        record_property("TTFT p99 (ms)", 1000 * _percentile(ttfts, 0.99))
        record_property("TTFT max (ms)", 1000 * max(ttfts))
    record_property(
        "server RSS before/after (MiB)", f"{rss_before / 2**20:.0f}/{load_lab.rss() / 2**20:.0f}"
    )
    record_property("failed", len(failures))
    resent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retry ")]
    record_property("requests resent before an answer", len(resent))
    if resent:
        record_property("first resend", resent[0])
    if failures:
        kinds = Counter(
            f"{type(f).__name__}: {f.message} (partial {f.partial_text!r})" for f in failures
        )
        record_property("failures", dict(kinds))
    assert not failures, failures[:3]
    assert all(r >= 1 for r in results)
    still_serving(load_lab.url)
