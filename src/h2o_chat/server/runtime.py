"""The server's live state: storage, the served models with their queues, running jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import anyio
from starlette.requests import Request

from h2o_chat.protocol.types import ErrorEvent, ModelInfo, StreamResponse
from h2o_chat.server import generation
from h2o_chat.server.backends.base import Backend, Job
from h2o_chat.server.backends.sources import load_backend
from h2o_chat.server.config import ModelSpec, ServerConfig
from h2o_chat.server.scheduler import ModelQueue
from h2o_chat.server.storage import Storage

logger = logging.getLogger("h2o_chat.server")


STOP_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Running:
    conversation_id: str  # "" for the OpenAI front door
    done: asyncio.Event


@dataclass(frozen=True, slots=True)
class ServedModel:
    info: ModelInfo
    backend: Backend
    queue: ModelQueue


class Runtime:
    """Created with the app; :meth:`start` opens storage and loads the models."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.models: dict[str, ServedModel] = {}
        self._storage: Storage | None = None
        self._running: dict[Job, _Running] = {}

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("the server has not started")
        return self._storage

    async def start(self) -> None:
        """Open storage and start every backend; on failure, close what was opened, then raise."""
        config = self.config
        self._storage = Storage(config.db_path)
        try:
            for spec in config.models:
                await self._start_model(spec)
        except BaseException:
            await self.close()
            raise

    async def _start_model(self, spec: ModelSpec) -> None:
        config = self.config
        backend = load_backend(
            spec.id,
            spec.source,
            upstream_timeout=config.upstream_timeout,
            upstream_parallel=config.upstream_parallel,
            engine=config.engine,
        )
        try:
            await backend.start()
        except BaseException:
            await backend.aclose()
            raise
        aliases = tuple(a for a, target in config.aliases.items() if target == spec.id)
        info = ModelInfo(spec.id, backend.kind, backend.context_length, aliases)
        self.models[spec.id] = ServedModel(
            info, backend, ModelQueue(config.queue_size, backend.parallel)
        )
        logger.info("serving %s (%s, context %d)", spec.id, backend.kind, info.context_length)

    async def close(self) -> None:
        """Cancel running generations, close the backends, then storage (safe to call twice)."""
        self.cancel_all()
        models, self.models = list(self.models.values()), {}
        try:
            for served in models:
                await served.backend.aclose()
        finally:
            if self._storage is not None:
                self._storage.close()
                self._storage = None

    def resolve(self, name: str) -> ServedModel | None:
        """The model served under ``name`` (an id or an alias)."""
        return self.models.get(self.config.aliases.get(name, name))

    def unknown_model(self, name: object) -> str:
        served = ", ".join([*self.models, *self.config.aliases])
        return f"unknown model {name!r}; served models: {served}"

    async def generate(
        self,
        served: ServedModel,
        job: Job,
        plan: generation.GenerationPlan,
        result: generation.GenerationResult,
        *,
        conversation_id: str = "",
        on_end: Callable[[], None] | None = None,
    ) -> AsyncGenerator[StreamResponse | ErrorEvent, None]:
        """:func:`generation.run` on ``served``, known to :meth:`stop` and :meth:`cancel_all`.

        ``on_end`` (saving the answer) runs when the generation ends, however it ends, and
        before :meth:`stop` returns.
        """
        done = asyncio.Event()
        self._running[job] = _Running(conversation_id, done)
        try:
            events = generation.run(served.backend, served.queue, job, plan, result)
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        finally:
            try:
                if on_end is not None:
                    on_end()
            finally:
                del self._running[job]
                done.set()

    async def stop(self, conversation_id: str) -> bool:
        """Stop the conversation's generations; whether there was one.

        Returns once they have ended and kept their answers, so that a next plan sees them;
        waits at most :data:`STOP_WAIT_SECONDS` (an upstream that sends nothing).
        """
        stopping = [
            (job, r) for job, r in self._running.items() if r.conversation_id == conversation_id
        ]
        for job, _ in stopping:
            job.stop()
        with anyio.move_on_after(STOP_WAIT_SECONDS):
            for _, running in stopping:
                await running.done.wait()
        return bool(stopping)

    def cancel_all(self) -> None:
        """Stop every generation (shutdown)."""
        for job in self._running:
            job.stop()


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app serving ``request``."""
    runtime: Runtime = request.app.state.runtime
    return runtime
