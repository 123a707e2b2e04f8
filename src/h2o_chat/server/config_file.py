"""``h2o-chat serve --config FILE.toml``: a TOML file read into the server's settings.

Every key is checked here, once, so that a typo or a wrong value stops the server before it
starts, with one line naming the file, the key and what is wrong (:class:`ConfigError`).
Values are checked by the objects that hold them (:class:`ServerConfig`,
:class:`EngineSettings`, :class:`ModelSettings`, :func:`parse_source`), one key at a time,
so each message names its key. Relative paths are relative to the file.

``[server]`` and ``[engine]`` hold the ``serve`` options of the same names, which the
command line overrides; each ``[models.ID]`` table is one served model. An API key is never
in the file: ``api_key_env`` names the environment variable that holds it, which must be set.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from h2o_chat.server.backends.chat_template import ChatTemplate
from h2o_chat.server.backends.llamacpp_settings import EngineSettings
from h2o_chat.server.backends.sources import (
    GGUFSource,
    Replica,
    ReplicatedSource,
    Source,
    TGISource,
    UpstreamSource,
    parse_source,
)
from h2o_chat.server.backends.upstream_http import Connection
from h2o_chat.server.config import (
    DEFAULT_PARAMETER_NAMES,
    LOG_LEVELS,
    ModelSettings,
    ModelSpec,
    ServerConfig,
    check_names,
)
from h2o_chat.server.store.base import SQLiteDatabase, parse_database

T = TypeVar("T")

# The TOML type each key takes (a float key takes an integer too).
SERVER_KEYS: dict[str, type] = {
    "host": str,
    "port": int,
    "db": str,
    "queue_size": int,
    "max_body_bytes": int,
    "api_key_env": str,
    "upstream_timeout": float,
    "upstream_parallel": int,
    "keep_alive": float,
    "tgi_model": str,
    "log_level": str,
}
ENGINE_KEYS: dict[str, type] = {"parallel": int, "threads": int, "ctx_size": int}
MODEL_KEYS: dict[str, type] = {
    "source": str,
    "sources": list,
    "model": str,
    "aliases": list,
    "api_key_env": str,
    "headers": dict,
    "ca_bundle": str,
    "chat_template": str,
    "parallel": int,
    "timeout": float,
    "context_length": int,
    "defaults": dict,
}
TABLES: dict[str, type] = {"server": dict, "engine": dict, "models": dict}

UPSTREAM_KEYS = ("model", "api_key_env", "headers", "ca_bundle", "chat_template", "timeout")
INLINE_KEY = (
    "an API key is never written in the file: put it in an environment variable and name "
    "that variable with api_key_env"
)
# Conventional environment variable names. A lowercase value is refused without being echoed:
# it is more likely a key pasted in than a variable's name.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110)
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes
TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


class ConfigError(ValueError):
    """What is wrong with a config file: ``problem`` at ``key`` (None: the file as a whole)."""

    def __init__(self, path: Path, key: str | None, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What a config file says.

    ``options`` are the ``serve`` options it sets, by their argparse names (``host``,
    ``queue_size``, ``parallel`` ...), for the command line to override; ``api_key_env``
    names the variable holding the server's own ``--api-key``.
    """

    path: Path
    options: Mapping[str, object] = field(default_factory=dict)
    api_key_env: str | None = None
    models: tuple[ModelSpec, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> FileConfig:
    """The config file at ``path``, checked; :class:`ConfigError` if it cannot be served."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(path, None, f"cannot read it: {reason}") from exc
    return parse_config(text, path, environ)


def parse_config(text: str, path: Path, environ: Mapping[str, str]) -> FileConfig:
    """The config file ``text`` (read from ``path``); key variables are looked up in
    ``environ``. Raises :class:`ConfigError`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from exc
    return _Reader(path, environ).document(document)


def key_path(*parts: str) -> str:
    """TOML's dotted key, quoting the parts that need it (``models."qwen2.5".parallel``)."""
    return ".".join(p if BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


class _Reader:
    """Reads one document; each method checks the keys of one table."""

    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.base = path.parent
        self.environ = environ

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.path, key, problem)

    def check(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, its ``ValueError`` reported at ``key``."""
        try:
            return make()
        except ValueError as exc:
            raise self.fail(key, str(exc)) from exc

    def table(
        self, values: Mapping[str, Any], known: Mapping[str, type | None], *parts: str
    ) -> None:
        """Every key of the table at ``parts`` is known and of its type (None: any, for the
        value's holder to check)."""
        for name, value in values.items():
            key = key_path(*parts, name)
            if name == "api_key":
                raise self.fail(key, INLINE_KEY)
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
                raise self.fail(key, f"unknown key ({hint})")
            expected = known[name]
            if expected is not None and not _is(value, expected):
                raise self.fail(key, f"must be {TYPE_NAMES[expected]}, not {_toml_type(value)}")

    def path_of(self, text: str) -> Path:
        return self.base / Path(text).expanduser()

    def document(self, document: Mapping[str, Any]) -> FileConfig:
        self.table(document, TABLES)
        server = dict(document.get("server", {}))
        engine = document.get("engine", {})
        models_tables = document.get("models", {})
        self.table(server, SERVER_KEYS, "server")
        self.table(engine, ENGINE_KEYS, "engine")
        api_key_env = server.pop("api_key_env", None)
        if api_key_env is not None:
            self.env_name("server.api_key_env", api_key_env)
        options = {name: self.server_option(name, value) for name, value in server.items()}
        for name, value in engine.items():
            self.check(key_path("engine", name), partial(EngineSettings, **{name: value}))
            options[name] = value
        models = tuple(self.model(model_id, values) for model_id, values in models_tables.items())
        aliases = self.aliases(models_tables, models)
        if "tgi_model" in server:
            served = partial(ServerConfig, models=models, aliases=aliases)
            self.check("server.tgi_model", partial(served, tgi_model=server["tgi_model"]))
        return FileConfig(self.path, options, api_key_env, models, aliases)

    def server_option(self, name: str, value: Any) -> object:
        key = key_path("server", name)
        match name:
            case "db":
                database = self.check(key, partial(parse_database, value))
                if isinstance(database, SQLiteDatabase):
                    return SQLiteDatabase(self.base / database.path)
                return database
            case "log_level":
                if value not in LOG_LEVELS:
                    raise self.fail(key, f"must be one of {', '.join(LOG_LEVELS)}")
                return value
            case "host" | "tgi_model":
                if not value.strip():
                    raise self.fail(key, "must not be empty")
                return value
        number: Any = float(value) if SERVER_KEYS[name] is float else value
        self.check(key, partial(ServerConfig, **{name: number}))
        return number

    def env_name(self, key: str, value: str) -> str:
        """A variable's name, which must be set (its value, the key, is never shown)."""
        if not ENV_NAME.fullmatch(value):
            raise self.fail(
                key,
                "must be the name of an environment variable (A-Z, 0-9 and _), not the key itself",
            )
        if not self.environ.get(value):
            raise self.fail(key, f"environment variable {value} is not set")
        return value

    def model(self, model_id: str, values: Any) -> ModelSpec:
        parts = ("models", model_id)
        key = key_path(*parts)
        if not _is(values, dict):
            raise self.fail(key, f"must be a table, not {_toml_type(values)}")
        if not model_id.strip():
            raise self.fail(key, "a model id must not be empty")
        self.table(values, MODEL_KEYS, *parts)
        source = self.source(values, parts)
        upstream = bool(_replicas(source))
        here = isinstance(source, GGUFSource)
        for name in values:
            where = None
            if name in UPSTREAM_KEYS and not upstream:
                where = "upstream URLs (http(s)://, tgi+http(s)://)"
            elif name == "parallel" and not (upstream or here):
                where = "upstream URLs and models in this process"
            elif name == "context_length" and here:
                where = "models not in this process (theirs is [engine] ctx_size)"
            if where is not None:
                raise self.fail(key_path(*parts, name), f"applies only to {where}")
        if upstream:
            source = self.upstream(source, values, parts)
        settings = {n: values[n] for n in ("parallel", "context_length") if n in values}
        if "timeout" in values:
            settings["timeout"] = float(values["timeout"])
        for name, value in settings.items():
            self.check(key_path(*parts, name), partial(ModelSettings, **{name: value}))
        defaults = values.get("defaults", {})
        self.table(defaults, dict.fromkeys(DEFAULT_PARAMETER_NAMES), *parts, "defaults")
        for name, value in defaults.items():
            key = key_path(*parts, "defaults", name)
            self.check(key, partial(ModelSettings, defaults={name: value}))
        return ModelSpec(model_id, source, ModelSettings(**settings, defaults=defaults))

    def source(self, values: Mapping[str, Any], parts: tuple[str, ...]) -> Source:
        """``source`` (any SOURCE) or ``sources`` (upstream URLs, the replicas of the model)."""
        if ("source" in values) == ("sources" in values):
            given = "both" if "source" in values else "neither"
            raise self.fail(key_path(*parts), f"give source or sources ({given} given)")
        if "source" in values:
            key, text = key_path(*parts, "source"), values["source"]
            if text.endswith(".gguf"):
                text = str(self.path_of(text))
            source = self.check(key, partial(parse_source, text))
            for replica in _replicas(source):
                self.check(key, partial(_check_host, replica.base_url))
            return source
        texts = values["sources"]
        if not texts:
            raise self.fail(key_path(*parts, "sources"), "must list at least one URL")
        replicas: list[Replica] = []
        for index, text in enumerate(texts):
            key = f"{key_path(*parts, 'sources')}[{index}]"
            parsed = self.check(key, partial(parse_source, text)) if _is(text, str) else None
            if not isinstance(parsed, UpstreamSource | TGISource):
                raise self.fail(key, "must be one http(s):// or tgi+http(s):// URL")
            self.check(key, partial(_check_host, parsed.base_url))
            replicas.append(parsed)
        return replicas[0] if len(replicas) == 1 else ReplicatedSource(tuple(replicas))

    def upstream(self, source: Source, values: Mapping[str, Any], parts: tuple[str, ...]) -> Source:
        """``source`` with the model's connection, and upstream model name, on each replica."""
        replicas = _replicas(source)
        connection = self.connection(values, replicas, parts)
        model = values.get("model")
        if model is not None:
            key = key_path(*parts, "model")
            if not any(isinstance(r, UpstreamSource) for r in replicas):
                raise self.fail(key, "applies only to OpenAI-compatible URLs, not tgi+ ones")
            if any(isinstance(r, UpstreamSource) and r.model for r in replicas):
                raise self.fail(key, "the upstream model is also given as #NAME in a source")
        template = values.get("chat_template")
        if template is not None:
            key = key_path(*parts, "chat_template")
            if not any(isinstance(r, TGISource) for r in replicas):
                raise self.fail(
                    key, "applies only to tgi+ URLs (an OpenAI-compatible engine applies its own)"
                )
            self.check(key, partial(ChatTemplate, template))
        done = tuple(
            replace(r, connection=connection, model=model or r.model)
            if isinstance(r, UpstreamSource)
            else replace(r, connection=connection, chat_template=template)
            for r in replicas
        )
        return ReplicatedSource(done) if isinstance(source, ReplicatedSource) else done[0]

    def connection(
        self,
        values: Mapping[str, Any],
        replicas: tuple[Replica, ...],
        parts: tuple[str, ...],
    ) -> Connection:
        api_key_env = values.get("api_key_env")
        if api_key_env is not None:
            self.env_name(key_path(*parts, "api_key_env"), api_key_env)
        headers: dict[str, str] = values.get("headers", {})
        for name, value in headers.items():
            key = key_path(*parts, "headers", name)
            if not HEADER_NAME.fullmatch(name):
                raise self.fail(key, "not a valid HTTP header name")
            if name.lower() == "authorization":
                raise self.fail(key, INLINE_KEY)
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                raise self.fail(key, "must be a string on one line")
        ca_bundle = None
        if "ca_bundle" in values:
            key = key_path(*parts, "ca_bundle")
            if not any(r.base_url.startswith("https://") for r in replicas):
                raise self.fail(key, "applies only to https:// URLs")
            ca_bundle = self.path_of(values["ca_bundle"])
            self.check(key, partial(_load_ca_bundle, ca_bundle))
        return Connection(api_key_env, headers, ca_bundle)

    def aliases(self, tables: Mapping[str, Any], models: tuple[ModelSpec, ...]) -> dict[str, str]:
        """Each model's ``aliases``: names no other model or alias has."""
        aliases: dict[str, str] = {}
        ids = [spec.id for spec in models]
        for model_id, values in tables.items():
            for index, alias in enumerate(values.get("aliases", ())):
                key = f"{key_path('models', model_id, 'aliases')}[{index}]"
                if not isinstance(alias, str) or not alias.strip():
                    raise self.fail(key, "must be a non-empty string")
                if alias in aliases:
                    raise self.fail(key, f"alias {alias!r} is already given to {aliases[alias]!r}")
                self.check(key, partial(check_names, ids, {alias: model_id}))
                aliases[alias] = model_id
        return aliases


def _is(value: object, expected: type) -> bool:
    """Whether ``value`` is of the TOML type ``expected`` (an integer is also a number)."""
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _toml_type(value: object) -> str:
    if isinstance(value, float):
        return "a float"
    kind = next((k for k in (bool, str, int, list, dict) if isinstance(value, k)), None)
    return "a date or time" if kind is None else TYPE_NAMES[kind]


def _replicas(source: Source) -> tuple[Replica, ...]:
    """The upstream engines ``source`` names (none for a model that is not upstream)."""
    match source:
        case ReplicatedSource(replicas):
            return replicas
        case UpstreamSource() | TGISource():
            return (source,)
    return ()


def _check_host(url: str) -> None:
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from exc
    if not host:
        raise ValueError(f"the URL {url!r} names no host")


def _load_ca_bundle(path: Path) -> None:
    """``ValueError`` unless ``path`` is a file of PEM certificates TLS can verify with."""
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"no PEM certificates in {path} ({exc})") from exc
