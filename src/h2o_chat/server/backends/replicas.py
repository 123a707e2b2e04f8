"""One model served by several engines (replicas) of the same weights, with failover.

Each request goes to the replica that is up with the fewest requests in flight (ties in turn).
A replica that fails before the request's first token is marked down, and the request moves on
to the next replica at once: nothing has reached the client yet. After a token, the failure
reaches the client as its error event with the text so far, as with one engine: an answer
cannot be resumed elsewhere. A failure of the request itself (TGI's ``validation``: a prompt
over the context, a parameter the engine refuses) would be the same on every replica, so it
passes through and marks nothing down. A down replica is probed every
:data:`PROBE_SECONDS` and serves again once it answers.

The set starts when at least one replica answers (the context it advertises is the smallest
of theirs); the others start down, and are probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import anyio
import httpx

from h2o_chat.server.backends.base import (
    Backend,
    BackendError,
    BackendToken,
    Job,
    ReplicaState,
)

logger = logging.getLogger("h2o_chat.server")

PROBE_SECONDS = 2.0  # between two probes of a down replica: back within seconds, cheap
PROBE_TIMEOUT = 5.0  # a probe not answered by then counts as down


@runtime_checkable
class ReplicaBackend(Backend, Protocol):
    """An engine that can be a replica: an upstream that says whether it is up now."""

    async def probe(self) -> bool:
        """Whether the engine answers its health route now (never raises)."""
        ...


@dataclass(slots=True, eq=False)
class _Replica:
    index: int
    url: str  # the base URL, without credentials: it is shown on /healthz and /metrics
    backend: ReplicaBackend
    up: bool = False
    started: bool = False  # start() ran (it learns the engine's context)
    in_flight: int = 0
    requests: int = 0
    prober: asyncio.Task[None] | None = None

    def state(self) -> ReplicaState:
        return ReplicaState(self.url, self.up, self.in_flight, self.requests)


def shown_url(base_url: str) -> str:
    """``base_url`` with any ``user:password@`` left out."""
    return str(httpx.URL(base_url).copy_with(userinfo=b""))


class ReplicatedBackend:
    """The engines ``replicas`` (base URL, backend) serving one model; a down one is probed
    every ``probe_every`` seconds.

    ``parallel`` is the sum of the replicas' (each is sent as many generations as alone),
    ``max_top_n_tokens`` the smallest of theirs.
    """

    kind = "replicas"

    def __init__(
        self,
        replicas: Sequence[tuple[str, ReplicaBackend]],
        *,
        probe_every: float = PROBE_SECONDS,
    ) -> None:
        if not replicas:
            raise ValueError("a replicated model needs at least one replica")
        self._replicas = [
            _Replica(index, shown_url(url), backend)
            for index, (url, backend) in enumerate(replicas)
        ]
        self.parallel = sum(backend.parallel for _, backend in replicas)
        self.max_top_n_tokens = min(backend.max_top_n_tokens for _, backend in replicas)
        self.context_length = 0  # the smallest of the replicas up at start
        self._turn = 0  # where the next tie is broken: the replica after the last chosen
        self._probe_every = probe_every

    async def start(self) -> None:
        """Start every replica that answers; the others are marked down and probed.

        Raises :class:`BackendError` when none answers: the model's context is not known.
        """
        await asyncio.gather(*(self._bring_up(replica) for replica in self._replicas))
        live = [replica for replica in self._replicas if replica.up]
        if not live:
            urls = ", ".join(replica.url for replica in self._replicas)
            raise BackendError(f"no replica answered: {urls}")
        self.context_length = min(replica.backend.context_length for replica in live)
        for replica in self._replicas:
            if not replica.up:
                self._watch(replica, "it did not answer at start")

    def replica_states(self) -> list[ReplicaState]:
        return [replica.state() for replica in self._replicas]

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        tried: list[_Replica] = []
        last_failure = ""
        while not job.cancel.is_set():  # a stopped request is not sent on
            replica = self._pick(tried)
            if replica is None:
                tail = f"; the last one tried failed: {last_failure}" if last_failure else ""
                raise BackendError(f"no replica of the model is up{tail}", "overloaded")
            tried.append(replica)
            replica.in_flight += 1
            replica.requests += 1
            sent = False
            try:
                async with contextlib.aclosing(replica.backend.stream(job)) as tokens:
                    async for token in tokens:
                        sent = True
                        yield token
                return
            except BackendError as exc:
                if exc.error_type == "validation":
                    raise
                last_failure = exc.message
                self._watch(replica, exc.message)
                if sent:
                    raise
            except Exception as exc:
                last_failure = "the engine failed"
                self._watch(replica, repr(exc))
                if sent:
                    raise
            finally:
                replica.in_flight -= 1

    def _pick(self, tried: Sequence[_Replica]) -> _Replica | None:
        """The replica up, not yet tried, with the fewest requests in flight; ties in turn."""
        candidates = [r for r in self._replicas if r.up and r not in tried]
        if not candidates:
            return None
        count = len(self._replicas)
        chosen = min(candidates, key=lambda r: (r.in_flight, (r.index - self._turn) % count))
        self._turn = chosen.index + 1
        return chosen

    def _watch(self, replica: _Replica, reason: str) -> None:
        """Mark ``replica`` down and probe it until it answers again (unless it is being
        probed already)."""
        if replica.prober is not None and not replica.prober.done():
            return
        replica.up = False
        logger.warning(
            "replica %s is down (%s); probing it every %g s",
            replica.url,
            reason,
            self._probe_every,
        )
        replica.prober = asyncio.create_task(self._probe(replica))

    async def _probe(self, replica: _Replica) -> None:
        while True:
            await asyncio.sleep(self._probe_every)
            if await self._bring_up(replica):
                logger.info("replica %s is up", replica.url)
                return

    async def _bring_up(self, replica: _Replica) -> bool:
        """Probe ``replica`` (starting it the first time it answers); whether it is up now."""
        answered = False
        with anyio.move_on_after(PROBE_TIMEOUT):
            answered = await replica.backend.probe()
        if not answered:
            return False
        if not replica.started:
            try:
                await replica.backend.start()
            except Exception as exc:
                logger.warning("replica %s answered but did not start: %s", replica.url, exc)
                return False
            replica.started = True
        replica.up = True
        return True

    async def aclose(self) -> None:
        """Stop probing, then close every replica."""
        probers = [r.prober for r in self._replicas if r.prober is not None]
        for prober in probers:
            prober.cancel()
        await asyncio.gather(*probers, return_exceptions=True)
        for replica in self._replicas:
            await replica.backend.aclose()
