"""Server configuration: the served models, their aliases, storage and limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from h2o_chat.protocol.parameters import validate_parameters
from h2o_chat.protocol.payloads import H2O_2023_MODELS
from h2o_chat.server.backends.llamacpp_settings import EngineSettings
from h2o_chat.server.backends.sources import GGUFSource, Source, parse_source
from h2o_chat.server.store.base import Database, default_database

BUILTIN_MODEL_ID = "SmolLM2-135M-Instruct"
DEFAULT_PORT = 8000
MAX_PORT = 65535
DEFAULT_QUEUE_SIZE = 8
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_UPSTREAM_TIMEOUT = 120.0
DEFAULT_KEEP_ALIVE = 15.0  # seconds of silence before a ":" comment, as TGI sent
DEFAULT_UPSTREAM_PARALLEL = 8  # generations sent at once to an upstream engine, per model
LOG_LEVELS = ("debug", "info", "warning", "error")
# The generation parameters a model may set defaults for: how it samples and how long it
# answers, not what a request asks to get back (details, return_full_text, ...).
DEFAULT_PARAMETER_NAMES = (
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "repetition_penalty",
    "max_new_tokens",
    "truncate",
    "stop",
)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """A model's own settings (a config file's); ``None`` takes the server-wide one.

    ``parallel`` is how many generations run at once: requests in flight to an upstream, or
    the slots of a model in this process. ``timeout`` is an upstream's read timeout.
    ``context_length`` replaces what the engine reports (an upstream that does not say).
    ``defaults`` are generation parameters for what a request leaves out, on every route.
    """

    parallel: int | None = None
    timeout: float | None = None
    context_length: int | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.parallel is not None and self.parallel < 1:
            raise ValueError("parallel must be >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError("context length must be >= 1")
        unknown = sorted(set(self.defaults) - set(DEFAULT_PARAMETER_NAMES))
        if unknown:
            known = ", ".join(DEFAULT_PARAMETER_NAMES)
            raise ValueError(f"no default for parameter {unknown[0]!r}; defaults: {known}")
        object.__setattr__(self, "defaults", validate_parameters(self.defaults))


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One served model: ``--model ID=SOURCE``, or a config file's ``[models.ID]``."""

    id: str
    source: Source
    settings: ModelSettings = field(default_factory=ModelSettings)


def _pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"expected {what}, got {text!r}")
    return name, value


def parse_model_spec(text: str) -> ModelSpec:
    """``ID=SOURCE`` as a :class:`ModelSpec`; ``ValueError`` saying what is wrong."""
    model_id, source = _pair(text, "ID=SOURCE")
    return ModelSpec(model_id, parse_source(source))


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
    db: Database = field(default_factory=default_database)  # --db: a SQLite file or PostgreSQL
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    queue_size: int = DEFAULT_QUEUE_SIZE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_key: str | None = None
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    upstream_parallel: int = DEFAULT_UPSTREAM_PARALLEL
    keep_alive: float = DEFAULT_KEEP_ALIVE
    tgi_model: str | None = None  # the model of TGI's root routes (an id or alias; None: first)
    engine: EngineSettings = field(default_factory=EngineSettings)  # models in this process

    def __post_init__(self) -> None:
        if not self.models:
            object.__setattr__(self, "models", (ModelSpec(BUILTIN_MODEL_ID, GGUFSource()),))
            h2o_2023_aliases = dict.fromkeys(H2O_2023_MODELS.values(), BUILTIN_MODEL_ID)
            object.__setattr__(self, "aliases", {**h2o_2023_aliases, **self.aliases})
        check_names((spec.id for spec in self.models), self.aliases)
        if self.tgi_model is not None and self.tgi_model not in self.served_names:
            served = ", ".join(self.served_names)
            raise ValueError(f"TGI model {self.tgi_model!r} is not served; served: {served}")
        if not 0 <= self.port <= MAX_PORT:
            raise ValueError(f"port must be 0 to {MAX_PORT}")
        if self.queue_size < 0:
            raise ValueError("queue size must be >= 0")
        if self.keep_alive <= 0:
            raise ValueError("keep-alive interval must be > 0 seconds")
        if self.upstream_timeout <= 0:
            raise ValueError("upstream timeout must be > 0 seconds")
        if self.upstream_parallel < 1:
            raise ValueError("upstream parallel must be >= 1")
        if self.max_body_bytes < 1:
            raise ValueError("max body bytes must be >= 1")

    @property
    def model_ids(self) -> list[str]:
        return [spec.id for spec in self.models]

    @property
    def served_names(self) -> list[str]:
        """Every name a model is served under: the ids, then the aliases."""
        return [*self.model_ids, *self.aliases]

    @property
    def default_model(self) -> str:
        """The id of the model TGI's root routes serve: ``tgi_model``'s, else the first."""
        name = self.tgi_model or self.models[0].id
        return self.aliases.get(name, name)


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
