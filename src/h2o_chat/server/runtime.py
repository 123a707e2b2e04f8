"""The server's live state: the store, the served models with their queues, running jobs,
metrics.

Models load in the background once the store is open, one after another, so the server answers
while they load: ``/health`` and ``/healthz`` say 503 until they are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from starlette.requests import Request

from h2o_chat.protocol.types import ErrorEvent, ModelInfo, StreamResponse
from h2o_chat.server import generation
from h2o_chat.server.backends.base import Backend, ChatMessage, Job, ReplicaState, Replicated
from h2o_chat.server.backends.sources import load_backend
from h2o_chat.server.config import ModelSpec, ServerConfig
from h2o_chat.server.metrics import Metrics
from h2o_chat.server.scheduler import ModelQueue
from h2o_chat.server.store import open_store
from h2o_chat.server.store.base import Store

logger = logging.getLogger("h2o_chat.server")


STOP_WAIT_SECONDS = 10.0
STOP_POLL_SECONDS = 0.02  # how often a stop sent to another replica looks for the turn's end


@dataclass(frozen=True, slots=True)
class _Running:
    conversation_id: str  # "" for the OpenAI front door
    done: asyncio.Event


@dataclass(frozen=True, slots=True)
class ServedModel:
    info: ModelInfo
    backend: Backend
    queue: ModelQueue
    defaults: Mapping[str, Any] = field(default_factory=dict)  # its own generation parameters

    def plan(
        self,
        messages: Sequence[ChatMessage],
        parameters: Mapping[str, Any],
        *,
        defaults: generation.PlanDefaults = generation.H2O_DEFAULTS,
        prefix: str = "",
    ) -> generation.GenerationPlan:
        """The plan for a request's validated ``parameters`` on this model: the one place a
        request becomes a generation, so the model's own defaults fill in what any route's
        request leaves out, before the route's ``defaults``."""
        return generation.plan_generation(
            messages,
            {**self.defaults, **parameters},
            self.info.context_length,
            defaults=defaults,
            prefix=prefix,
        )


class Runtime:
    """Created with the app; :meth:`start` opens the store and starts loading the models.

    ``models`` holds the models loaded so far; ``loading`` the ids still to load, and
    ``load_error`` why loading stopped, if a model could not load.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.models: dict[str, ServedModel] = {}
        self.loading: list[str] = list(config.model_ids)
        self.load_error: str | None = None
        self.metrics = Metrics(
            lambda: {i: served.queue for i, served in self.models.items()}, self.replica_states
        )
        self._store: Store | None = None
        self._loader: asyncio.Task[None] | None = None
        self._running: dict[Job, _Running] = {}

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the server has not started")
        return self._store

    async def start(self) -> None:
        """Open the store, then load the models in the background (:meth:`loaded` waits)."""
        self._store = await open_store(self.config.db, self._stop_here)
        self._loader = asyncio.create_task(self._load_models())

    async def _load_models(self) -> None:
        for spec in self.config.models:
            try:
                await self._start_model(spec)
            except Exception as exc:
                logger.error("model %s could not load", spec.id, exc_info=exc)
                self.load_error = f"model {spec.id!r} could not load: {exc}"
                return
            self.loading.remove(spec.id)

    async def loaded(self) -> bool:
        """Wait until loading ends; whether every model loaded."""
        if self._loader is not None:
            await asyncio.wait({self._loader})
        return not self.loading

    async def _start_model(self, spec: ModelSpec) -> None:
        config, settings = self.config, spec.settings
        engine = config.engine
        if settings.parallel is not None:
            engine = replace(engine, parallel=settings.parallel)
        backend = load_backend(
            spec.id,
            spec.source,
            upstream_timeout=settings.timeout or config.upstream_timeout,
            upstream_parallel=settings.parallel or config.upstream_parallel,
            engine=engine,
        )
        try:
            await backend.start()
        except BaseException:
            await backend.aclose()
            raise
        aliases = tuple(a for a, target in config.aliases.items() if target == spec.id)
        context_length = settings.context_length or backend.context_length
        info = ModelInfo(spec.id, backend.kind, context_length, aliases)
        queue = ModelQueue(config.queue_size, backend.parallel)
        self.models[spec.id] = ServedModel(info, backend, queue, settings.defaults)
        logger.info("serving %s (%s, context %d)", spec.id, backend.kind, info.context_length)

    async def close(self) -> None:
        """Stop loading, cancel running generations, close the backends, then the store (safe
        to call twice)."""
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.wait({self._loader})
        self.cancel_all()
        models, self.models = list(self.models.values()), {}
        try:
            for served in models:
                await served.backend.aclose()
        finally:
            if self._store is not None:
                store, self._store = self._store, None
                await store.close()

    def replica_states(self) -> dict[str, list[ReplicaState]]:
        """Each replicated model's replicas: up or down, and their load."""
        return {
            model_id: served.backend.replica_states()
            for model_id, served in self.models.items()
            if isinstance(served.backend, Replicated)
        }

    def resolve(self, name: str) -> ServedModel | None:
        """The model served under ``name`` (an id or an alias)."""
        return self.models.get(self.config.aliases.get(name, name))

    def unknown_model(self, name: object) -> str:
        served = ", ".join([*self.models, *self.config.aliases])
        loading = f" (still loading: {', '.join(self.loading)})" if self.loading else ""
        return f"unknown model {name!r}; served models: {served}{loading}"

    async def generate(
        self,
        served: ServedModel,
        job: Job,
        plan: generation.GenerationPlan,
        result: generation.GenerationResult,
        *,
        route: str,
        conversation_id: str = "",
        on_end: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[StreamResponse | ErrorEvent, None]:
        """:func:`generation.run` on ``served``, known to :meth:`stop` and :meth:`cancel_all`,
        counted in the metrics under ``route``.

        ``on_end`` (saving the answer) runs when the generation ends, however it ends (shielded
        from cancellation), and before :meth:`stop` returns.
        """
        done = asyncio.Event()
        self._running[job] = _Running(conversation_id, done)
        timer = self.metrics.timer(served.info.id)
        try:
            events = generation.run(served.backend, served.queue, job, plan, result)
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, StreamResponse):
                        timer.token()
                    yield event
        finally:
            timer.end(route, _outcome(result), result.generated_tokens)
            try:
                if on_end is not None:
                    with anyio.CancelScope(shield=True):
                        await on_end()
            finally:
                del self._running[job]
                done.set()

    async def stop(self, conversation_id: str) -> bool:
        """Stop the conversation's generations, here or on another replica; whether there was
        one.

        Returns once they have ended and kept their answers, so that a next plan sees them;
        waits at most :data:`STOP_WAIT_SECONDS` (an upstream that sends nothing) for those
        here, and as long again for a turn on another replica.
        """
        stopped = await self._stop_here(conversation_id)
        if self.store.shared:  # it may run on another replica: asked first, then told
            elsewhere = await self.store.turn_running(conversation_id)
            await self.store.request_stop(conversation_id)
            if elsewhere:
                await self._wait_elsewhere(conversation_id)
                stopped = True
        return stopped

    async def _wait_elsewhere(self, conversation_id: str) -> None:
        """Return once the conversation's turn on another replica has ended (its claim is
        released after its answer was saved)."""
        with anyio.move_on_after(STOP_WAIT_SECONDS):
            while await self.store.turn_running(conversation_id):
                await anyio.sleep(STOP_POLL_SECONDS)

    async def _stop_here(self, conversation_id: str) -> bool:
        """Stop the conversation's generations in this process (and wait for them)."""
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


def _outcome(result: generation.GenerationResult) -> str:
    """How a generation ended, for the metrics."""
    if result.error is not None:
        return result.error.error_type or "generation"
    return "success" if result.finish_reason is not None else "cancelled"


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app serving ``request``."""
    runtime: Runtime = request.app.state.runtime
    return runtime
