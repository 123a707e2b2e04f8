"""The server's live state: storage, the served models with their queues, running jobs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from h2o_chat.protocol.types import ModelInfo
from h2o_chat.server.backends import Backend, Job, load_backend
from h2o_chat.server.config import ModelSpec, ServerConfig
from h2o_chat.server.scheduler import ModelQueue
from h2o_chat.server.storage import Storage

logger = logging.getLogger("h2o_chat.server")


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
        self._running: dict[Job, str] = {}  # job -> its conversation id ("" for /v1)

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
        backend = load_backend(spec, upstream_timeout=config.upstream_timeout)
        try:
            await backend.start()
        except BaseException:
            await backend.aclose()
            raise
        aliases = tuple(a for a, target in config.aliases.items() if target == spec.id)
        info = ModelInfo(spec.id, backend.kind, backend.context_length, aliases)
        self.models[spec.id] = ServedModel(info, backend, ModelQueue(config.queue_size))
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

    @contextlib.contextmanager
    def running(self, job: Job, conversation_id: str = "") -> Iterator[Job]:
        """Register ``job`` for :meth:`stop` and :meth:`cancel_all` while the block runs."""
        self._running[job] = conversation_id
        try:
            yield job
        finally:
            del self._running[job]

    def stop(self, conversation_id: str) -> bool:
        """Cancel the conversation's running generations; whether there was one."""
        jobs = [job for job, owner in self._running.items() if owner == conversation_id]
        for job in jobs:
            job.cancel.set()
        return bool(jobs)

    def cancel_all(self) -> None:
        for job in self._running:
            job.cancel.set()
