"""The engines behind the server: one small interface, one module per engine.

A backend renders a conversation with its model's chat template and yields the generated
tokens; the model's own end of sequence comes as a token with ``eos=True``. Stop sequences,
``max_new_tokens`` accounting and the protocol's events are the job of
:mod:`h2o_chat.server.generation`, so each backend stays small.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from h2o_chat.server.config import ModelSpec

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
    """A generated token; ``eos`` marks the model's own end of sequence (the last token)."""

    id: int
    text: str
    logprob: float | None = None
    eos: bool = False


class BackendError(Exception):
    """A failure to report to the client as a TGI error event of ``error_type``."""

    def __init__(self, message: str, error_type: ErrorType = "generation") -> None:
        super().__init__(message)
        self.message = message
        self.error_type: ErrorType = error_type


@runtime_checkable
class Backend(Protocol):
    """An engine serving one model. ``start`` loads it; then ``context_length`` is known.

    ``parallel`` is how many generations it runs at once: 1 for a model in this process,
    more for an engine that batches them (an upstream server).
    """

    kind: str
    context_length: int
    parallel: int

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


def check_source(source: str) -> None:
    """Raise ``ValueError`` unless ``source`` has one of the forms :func:`load_backend` takes."""
    if source == "builtin":
        return
    if source.endswith(".gguf"):
        if not Path(source).is_file():
            raise ValueError(f"no GGUF file at {source}: give the path of an existing .gguf file")
        return
    if source.startswith(("http://", "https://")):
        return
    if source == "synthetic" or source.startswith("synthetic:"):
        from h2o_chat.server.backends.synthetic import parse_count

        parse_count(source)
        return
    if source.startswith("python:"):
        _python_target(source)
        return
    raise ValueError(
        f"unknown model source {source!r}: expected builtin, a .gguf path, an http(s) URL, "
        "synthetic[:N] or python:MODULE:FACTORY"
    )


def _python_target(source: str) -> tuple[str, str]:
    module, sep, factory = source.removeprefix("python:").rpartition(":")
    if not sep or not module or not factory:
        raise ValueError(f"expected python:MODULE:FACTORY, got {source!r}")
    return module, factory


def load_backend(spec: ModelSpec, *, upstream_timeout: float, upstream_parallel: int) -> Backend:
    """The (not yet started) backend for ``spec``."""
    source = spec.source
    check_source(source)
    if source == "builtin" or source.endswith(".gguf"):
        from h2o_chat.server.backends.builtin import BuiltinBackend

        return BuiltinBackend(None if source == "builtin" else source)
    if source.startswith(("http://", "https://")):
        from h2o_chat.server.backends.openai_upstream import OpenAIUpstreamBackend

        base_url, _, upstream_model = source.partition("#")
        return OpenAIUpstreamBackend(
            base_url,
            upstream_model or spec.id,
            timeout=upstream_timeout,
            parallel=upstream_parallel,
        )
    if source.startswith("synthetic"):
        from h2o_chat.server.backends.synthetic import SyntheticBackend, parse_count

        return SyntheticBackend(parse_count(source))
    module_name, factory_name = _python_target(source)
    factory = getattr(importlib.import_module(module_name), factory_name)
    backend = factory(spec.id)
    if not isinstance(backend, Backend):
        raise TypeError(f"{source} returned {type(backend).__name__}, not a backend")
    return backend
