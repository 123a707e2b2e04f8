"""Server configuration: the served models, their aliases, storage and limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from h2o_chat.protocol.payloads import H2O_2023_MODELS as SEED_MODELS

BUILTIN_MODEL_ID = "SmolLM2-135M-Instruct"
DEFAULT_PORT = 8000
DEFAULT_QUEUE_SIZE = 8
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_UPSTREAM_TIMEOUT = 120.0
DEFAULT_KEEP_ALIVE = 15.0  # seconds of silence before a ":" comment, as TGI sent
DEFAULT_UPSTREAM_PARALLEL = 8  # generations sent at once to an upstream engine, per model

SOURCE_HELP = """\
SOURCE is one of:
  builtin                      SmolLM2-135M-Instruct, run in-process (llama-cpp-python)
  PATH.gguf                    any local GGUF file, run in-process
  URL#UPSTREAM_MODEL           an OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama),
                               e.g. http://127.0.0.1:8080/v1#qwen2.5; without #, the ID is sent
  synthetic[:N]                test backend: echoes the last user message, or N tokens " tok"
  python:MODULE:FACTORY        FACTORY(model_id) from an importable module returns the backend"""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One ``--model ID=SOURCE``."""

    id: str
    source: str


def default_db_path() -> Path:
    """The SQLite file under the user's data directory."""
    return platformdirs.user_data_path("h2o-chat") / "h2o-chat.sqlite3"


def _pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"expected {what}, got {text!r}")
    return name, value


def parse_model_spec(text: str) -> ModelSpec:
    """``ID=SOURCE`` as a :class:`ModelSpec`; the source's syntax is checked by the backends."""
    from h2o_chat.server.backends import check_source

    model_id, source = _pair(text, "ID=SOURCE")
    check_source(source)
    return ModelSpec(model_id, source)


def parse_alias(text: str) -> tuple[str, str]:
    """``NAME=ID`` as ``(name, id)``."""
    return _pair(text, "NAME=ID")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything :func:`h2o_chat.server.app.create_app` needs.

    With no ``models`` the builtin model is served, with the seed's three H2o model ids as
    its aliases, so that the unchanged 2023 client works against a default server.
    """

    models: tuple[ModelSpec, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)
    db_path: Path = field(default_factory=default_db_path)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_key: str | None = None
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    upstream_parallel: int = DEFAULT_UPSTREAM_PARALLEL
    keep_alive: float = DEFAULT_KEEP_ALIVE

    def __post_init__(self) -> None:
        if not self.models:
            object.__setattr__(self, "models", (ModelSpec(BUILTIN_MODEL_ID, "builtin"),))
            seed_aliases = dict.fromkeys(SEED_MODELS.values(), BUILTIN_MODEL_ID)
            object.__setattr__(self, "aliases", {**seed_aliases, **self.aliases})
        check_names((spec.id for spec in self.models), self.aliases)
        if self.queue_size < 0:
            raise ValueError("queue size must be >= 0")
        if self.keep_alive <= 0:
            raise ValueError("keep-alive interval must be > 0 seconds")
        if self.upstream_parallel < 1:
            raise ValueError("upstream parallel must be >= 1")
        if self.max_body_bytes < 1:
            raise ValueError("max body bytes must be >= 1")

    @property
    def model_ids(self) -> list[str]:
        return [spec.id for spec in self.models]


def check_names(model_ids: Iterable[str], aliases: Mapping[str, str]) -> None:
    """Model ids must be unique; every alias must name a served id and not shadow one."""
    served: set[str] = set()
    for model_id in model_ids:
        if model_id in served:
            raise ValueError(f"model id {model_id!r} given twice")
        served.add(model_id)
    for alias, target in aliases.items():
        if alias in served:
            raise ValueError(f"alias {alias!r} is already a model id")
        if target not in served:
            raise ValueError(f"alias {alias!r} points to {target!r}, which is not served")
