"""The engine of benchmark 8 (b): a token every :data:`TICK_SECONDS`, any number of answers at
once (as an engine that batches), so that a stream's pauses are the server's own, not the
queue's or the engine's. ``--model ID=python:bench.paced:paced``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from h2o_chat.server.backends.base import BackendToken, Job

TICK_SECONDS = 0.1  # an engine under load: 100 streams keep the server far from busy


class Paced:
    kind = "paced"
    parallel = 1000
    max_top_n_tokens = 0
    context_length = 8192

    async def start(self) -> None:
        return None

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        job.prompt_tokens = 1
        for index in range(job.request.max_new_tokens):  # ends at the length limit
            await asyncio.sleep(TICK_SECONDS)
            yield BackendToken(index + 1, " tok", 0.0)

    async def aclose(self) -> None:
        return None


def paced(model_id: str) -> Paced:
    return Paced()
