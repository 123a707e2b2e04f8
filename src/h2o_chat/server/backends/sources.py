"""A model's SOURCE: parsed once into a typed value, which :func:`load_backend` turns into
the engine that serves it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from h2o_chat.server.backends.base import Backend
from h2o_chat.server.backends.llamacpp import LlamaCppBackend
from h2o_chat.server.backends.llamacpp_settings import EngineSettings
from h2o_chat.server.backends.openai_upstream import OpenAIUpstreamBackend
from h2o_chat.server.backends.replicas import ReplicaBackend, ReplicatedBackend
from h2o_chat.server.backends.synthetic import SyntheticBackend
from h2o_chat.server.backends.tgi_upstream import TGIUpstreamBackend
from h2o_chat.server.backends.upstream_http import Connection

SOURCE_HELP = """\
SOURCE is one of:
  builtin                      SmolLM2-135M-Instruct, run in-process (llama.cpp)
  PATH.gguf                    any local GGUF file, run in-process
  URL#UPSTREAM_MODEL           an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama),
                               e.g. http://127.0.0.1:8080/v1#qwen2.5; without #, the ID is sent
  tgi+URL                      TGI's own /generate_stream, e.g. tgi+http://127.0.0.1:3000
  UPSTREAM,UPSTREAM,...        replicas of one model: each request goes to the least busy
                               healthy one, and moves on if one fails before its first token
  synthetic[:N]                test backend: echoes the last user message, or N tokens " tok"
  python:MODULE:FACTORY        FACTORY(model_id) from an importable module returns the backend"""


@dataclass(frozen=True, slots=True)
class GGUFSource:
    """A GGUF model run in this process; ``path`` None is the built-in SmolLM2."""

    path: Path | None = None


@dataclass(frozen=True, slots=True)
class UpstreamSource:
    """An OpenAI-compatible server; ``model`` None sends the served model's own id."""

    base_url: str
    model: str | None = None
    connection: Connection = field(default_factory=Connection)


@dataclass(frozen=True, slots=True)
class TGISource:
    """A text-generation-inference server, streamed through its ``/generate_stream``, its
    prompts rendered with ``chat_template`` (Jinja, Hugging Face style; None: ChatML)."""

    base_url: str
    connection: Connection = field(default_factory=Connection)
    chat_template: str | None = None


Replica = UpstreamSource | TGISource


@dataclass(frozen=True, slots=True)
class ReplicatedSource:
    """Several engines serving the same model; each request goes to one of them."""

    replicas: tuple[Replica, ...]


@dataclass(frozen=True, slots=True)
class SyntheticSource:
    """The test engine: echo (``count`` None) or ``count`` tokens."""

    count: int | None = None


@dataclass(frozen=True, slots=True)
class PythonSource:
    """``FACTORY(model_id)`` from an importable module (tests and benchmarks)."""

    module: str
    factory: str


Source = GGUFSource | UpstreamSource | TGISource | ReplicatedSource | SyntheticSource | PythonSource


def parse_source(text: str) -> Source:
    """The source ``text`` names; ``ValueError`` saying what is expected when it names none."""
    if text == "builtin":
        return GGUFSource()
    if text.endswith(".gguf"):
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"no GGUF file at {text}: give the path of an existing .gguf file")
        return GGUFSource(path)
    if text.startswith(("http://", "https://", "tgi+http://", "tgi+https://")):
        replicas = tuple(_parse_replica(part.strip()) for part in text.split(","))
        return replicas[0] if len(replicas) == 1 else ReplicatedSource(replicas)
    if text == "synthetic":
        return SyntheticSource()
    if text.startswith("synthetic:"):
        count = text.removeprefix("synthetic:")
        if not count.isdigit():
            raise ValueError(f"expected synthetic or synthetic:N, got {text!r}")
        return SyntheticSource(int(count))
    if text.startswith("python:"):
        module, sep, factory = text.removeprefix("python:").rpartition(":")
        if not sep or not module or not factory:
            raise ValueError(f"expected python:MODULE:FACTORY, got {text!r}")
        return PythonSource(module, factory)
    raise ValueError(
        f"unknown model source {text!r}: expected builtin, a .gguf path, an http(s) URL, "
        "synthetic[:N] or python:MODULE:FACTORY"
    )


def _parse_replica(text: str) -> Replica:
    if text.startswith(("tgi+http://", "tgi+https://")):
        return TGISource(text.removeprefix("tgi+"))
    if text.startswith(("http://", "https://")):
        base_url, _, model = text.partition("#")
        return UpstreamSource(base_url, model or None)
    raise ValueError(f"expected an http(s):// or tgi+http(s):// URL for a replica, got {text!r}")


def load_backend(
    model_id: str,
    source: Source,
    *,
    upstream_timeout: float,
    upstream_parallel: int,
    engine: EngineSettings | None = None,
) -> Backend:
    """The (not yet started) engine serving ``model_id`` from ``source``."""
    match source:
        case GGUFSource(path):
            return LlamaCppBackend(path, engine)
        case UpstreamSource(base_url, model, connection):
            return OpenAIUpstreamBackend(
                base_url,
                model or model_id,
                connection=connection,
                timeout=upstream_timeout,
                parallel=upstream_parallel,
            )
        case TGISource(base_url, connection, chat_template):
            return TGIUpstreamBackend(
                base_url,
                connection=connection,
                chat_template=chat_template,
                timeout=upstream_timeout,
                parallel=upstream_parallel,
            )
        case ReplicatedSource(replicas):
            members = []
            for replica in replicas:
                backend = load_backend(
                    model_id,
                    replica,
                    upstream_timeout=upstream_timeout,
                    upstream_parallel=upstream_parallel,
                )
                if not isinstance(backend, ReplicaBackend):
                    raise TypeError(f"{type(backend).__name__} cannot be probed as a replica")
                members.append((replica.base_url, backend))
            return ReplicatedBackend(members)
        case SyntheticSource(count):
            return SyntheticBackend(count)
        case PythonSource(module, factory):
            backend = getattr(importlib.import_module(module), factory)(model_id)
            if not isinstance(backend, Backend):
                raise TypeError(
                    f"python:{module}:{factory} returned {type(backend).__name__}, not a backend"
                )
            return backend
