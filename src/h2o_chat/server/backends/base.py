"""The interface every engine implements, and the values passed across it.

A backend renders a conversation with its model's chat template and yields the generated
tokens; the model's own end of sequence comes as a token with ``eos=True``. Stop sequences,
``max_new_tokens`` accounting and the protocol's events are the job of
:mod:`h2o_chat.server.generation`, so each backend stays small.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

ErrorType = Literal["generation", "overloaded", "validation", "incomplete_generation"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate: the whole conversation and the sampling settings.

    ``temperature`` is ``None`` for greedy decoding; ``seed`` is set whenever it samples.
    """

    messages: Sequence[ChatMessage]
    max_new_tokens: int
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    truncate: int | None = None
    seed: int | None = None
    top_n_tokens: int = 0  # alternatives wanted with each token (TGI's top_n_tokens)
    token_details: bool = True  # each token's id and logprob are shown (not on /v1)


@dataclass(slots=True, eq=False)
class Job:
    """One generation: the request, its stop signal and the prompt size.

    Backends read ``cancel`` after every token (from any thread); ``stopped`` is the same
    signal for the event loop to wait on. :meth:`stop` sets both. Compared and hashed by
    identity.
    """

    request: GenerationRequest
    cancel: threading.Event = field(default_factory=threading.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    prompt_tokens: int | None = None  # set by the backend once the prompt is rendered

    def stop(self) -> None:
        """Ask the generation to end (stop-generating, shutdown); call on the event loop."""
        self.cancel.set()
        self.stopped.set()


@dataclass(frozen=True, slots=True)
class BackendToken:
    """A generated token; ``eos`` marks the model's own end of sequence (the last token).

    ``special`` marks another special token the engine flagged (a template's or a tool's): it
    is shown as special and, as in TGI, left out of the generated text. ``top_tokens`` are the
    most likely alternatives at its position, most likely first, when the request asked for
    ``top_n_tokens``.
    """

    id: int
    text: str
    logprob: float | None = None
    eos: bool = False
    top_tokens: tuple[BackendToken, ...] = ()
    special: bool = False


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """One token of a text: its id, its text and where that text lies in the input."""

    id: int
    text: str
    start: int
    stop: int


class BackendError(Exception):
    """A failure to report to the client as a TGI error event of ``error_type``."""

    def __init__(self, message: str, error_type: ErrorType = "generation") -> None:
        super().__init__(message)
        self.message = message
        self.error_type: ErrorType = error_type


class UpstreamUnavailable(BackendError):
    """An upstream engine that could not be reached, or refused before its first token (a
    connection failure, a 5xx, a 429): another replica of the model may serve the request."""


@runtime_checkable
class Backend(Protocol):
    """An engine serving one model. ``start`` loads it; then ``context_length`` is known.

    ``parallel`` is how many generations it runs at once, batched together (the slots of a
    model in this process, or requests sent to an upstream server). ``max_top_n_tokens`` is
    the most alternatives it can give per token (0: none).
    """

    kind: str
    context_length: int
    parallel: int
    max_top_n_tokens: int

    async def start(self) -> None: ...

    def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        """Tokens until the model's end (an ``eos`` token), ``job.cancel``, or
        ``max_new_tokens``; raises :class:`BackendError` for reportable failures."""
        ...

    async def aclose(self) -> None: ...


def context_error(prompt_tokens: int, max_new_tokens: int, context_length: int) -> BackendError:
    """TGI's validation error for a prompt that leaves no room for ``max_new_tokens``."""
    return BackendError(
        f"`inputs` tokens + `max_new_tokens` must be <= {context_length}. Given: "
        f"{prompt_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`",
        "validation",
    )


@runtime_checkable
class Tokenizer(Protocol):
    """A backend that can split text into its model's tokens (a model in this process)."""

    async def tokenize(self, text: str) -> list[TokenSpan]: ...


@runtime_checkable
class Described(Protocol):
    """A backend with settings and load worth showing on ``/healthz`` (a model in this process)."""

    def describe(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One engine of a replicated model as ``/healthz`` and ``/metrics`` show it: ``url`` is its
    base URL without credentials; ``requests`` counts every request sent to it."""

    url: str
    up: bool
    in_flight: int
    requests: int


@runtime_checkable
class Replicated(Protocol):
    """A backend that spreads its model over several engines (:mod:`.replicas`)."""

    def replica_states(self) -> list[ReplicaState]: ...
