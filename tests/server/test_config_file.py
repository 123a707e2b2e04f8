"""``h2o_chat.server.config_file`` in-process: a good file read into the server's settings, and
broken files, each refused with one line naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from h2o_chat.server.backends.sources import (
    GGUFSource,
    ReplicatedSource,
    SyntheticSource,
    TGISource,
    UpstreamSource,
)
from h2o_chat.server.backends.upstream_http import Connection
from h2o_chat.server.config import ModelSettings, ModelSpec
from h2o_chat.server.config_file import INLINE_KEY, ConfigError, load_config, parse_config
from h2o_chat.server.store.base import PostgresDatabase, SQLiteDatabase

ENVIRON = {"UPSTREAM_KEY": "sk-upstream-secret", "SERVER_KEY": "sk-server-secret"}

GOOD = """
[server]
port = 8123
db = "data/chat.sqlite3"
keep_alive = 5
api_key_env = "SERVER_KEY"
tgi_model = "parrot"
log_level = "debug"

[engine]
threads = 2

[models.smol]
source = "builtin"
aliases = ["small"]
parallel = 2
defaults = { max_new_tokens = 64, temperature = 0.7, stop = "User:" }

[models.echo]
source = "synthetic"
aliases = ["parrot"]
context_length = 100

[models."qwen2.5"]
sources = ["https://127.0.0.1:8443/v1", "http://127.0.0.1:8080/v1", "tgi+http://127.0.0.1:3000"]
model = "Qwen/Qwen2.5-7B-Instruct"
api_key_env = "UPSTREAM_KEY"
headers = { X-Team = "chat" }
ca_bundle = "ca.pem"
timeout = 60
"""


@pytest.fixture
def ca_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def test_a_good_file_gives_every_setting(tmp_path: Path, ca_bundle: Path) -> None:
    file = parse_config(GOOD, tmp_path / "h2o-chat.toml", ENVIRON)
    assert file.options == {
        "port": 8123,
        "db": SQLiteDatabase(tmp_path / "data/chat.sqlite3"),  # relative to the file
        "keep_alive": 5.0,
        "tgi_model": "parrot",
        "log_level": "debug",
        "threads": 2,
    }
    assert file.api_key_env == "SERVER_KEY"
    connection = Connection("UPSTREAM_KEY", {"X-Team": "chat"}, ca_bundle)
    model = "Qwen/Qwen2.5-7B-Instruct"
    assert file.models == (
        ModelSpec(
            "smol",
            GGUFSource(),
            ModelSettings(
                parallel=2, defaults={"max_new_tokens": 64, "temperature": 0.7, "stop": ["User:"]}
            ),
        ),
        ModelSpec("echo", SyntheticSource(), ModelSettings(context_length=100)),
        ModelSpec(
            "qwen2.5",
            ReplicatedSource(
                (
                    UpstreamSource("https://127.0.0.1:8443/v1", model, connection),
                    UpstreamSource("http://127.0.0.1:8080/v1", model, connection),
                    TGISource("http://127.0.0.1:3000", connection),
                )
            ),
            ModelSettings(timeout=60.0),
        ),
    )
    assert file.aliases == {"small": "smol", "parrot": "echo"}


def test_one_source_with_its_model_name_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models/tiny.gguf").write_bytes(b"")
    text = """
    [server]
    db = "postgresql://chat@db.internal/chat"
    [models.tiny]
    source = "models/tiny.gguf"
    [models.up]
    source = "http://127.0.0.1:8080/v1#served-name"
    """
    file = parse_config(text, tmp_path / "h2o-chat.toml", {})
    assert file.options == {"db": PostgresDatabase("postgresql://chat@db.internal/chat")}
    assert [spec.source for spec in file.models] == [
        GGUFSource(tmp_path / "models/tiny.gguf"),
        UpstreamSource("http://127.0.0.1:8080/v1", "served-name"),
    ]


def test_a_tgi_source_takes_its_chat_template(tmp_path: Path) -> None:
    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    text = f"""
    [models.tgi]
    sources = ["tgi+http://127.0.0.1:3000", "tgi+http://127.0.0.1:3001"]
    chat_template = "{template}"
    """
    file = parse_config(text, tmp_path / "h2o-chat.toml", {})
    assert file.models[0].source == ReplicatedSource(
        (
            TGISource("http://127.0.0.1:3000", chat_template=template),
            TGISource("http://127.0.0.1:3001", chat_template=template),
        )
    )


def test_an_empty_file_is_the_default_server(tmp_path: Path) -> None:
    file = parse_config("", tmp_path / "h2o-chat.toml", {})
    assert (file.options, file.api_key_env, file.models, file.aliases) == ({}, None, (), {})


# Each broken file: its text, the key named, the problem (the line is "FILE: KEY: PROBLEM").
BROKEN = [
    pytest.param(
        "[server]\nport = \n",
        None,
        "not valid TOML: Invalid value (at line 2, column 8)",
        id="toml-syntax",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\n[models.a]\nsource = 'builtin'\n",
        None,
        "not valid TOML: Cannot declare ('models', 'a') twice (at line 3, column 10)",
        id="duplicate-id",
    ),
    pytest.param("[sever]\nport = 1\n", "sever", "unknown key (did you mean server?)", id="table"),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\nparalel = 2\n",
        "models.a.paralel",
        "unknown key (did you mean parallel?)",
        id="unknown-key",
    ),
    pytest.param(
        "[engine]\ngpu = 1\n",
        "engine.gpu",
        "unknown key (known: parallel, threads, ctx_size)",
        id="unknown-key-no-match",
    ),
    pytest.param(
        "[server]\nport = '8000'\n", "server.port", "must be an integer, not a string", id="type"
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\naliases = 'b'\n",
        "models.a.aliases",
        "must be an array, not a string",
        id="type-array",
    ),
    pytest.param("models.a = 'builtin'\n", "models.a", "must be a table, not a string", id="model"),
    pytest.param(
        "[models.a]\naliases = ['b']\n",
        "models.a",
        "give source or sources (neither given)",
        id="no-source",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\nsources = ['http://h/v1']\n",
        "models.a",
        "give source or sources (both given)",
        id="two-sources",
    ),
    pytest.param(
        "[models.a]\nsource = 'ftp://h/v1'\n",
        "models.a.source",
        "unknown model source 'ftp://h/v1': expected builtin, a .gguf path, an http(s) URL, "
        "synthetic[:N] or python:MODULE:FACTORY",
        id="url-scheme",
    ),
    pytest.param(
        "[models.a]\nsources = ['http://h/v1', 'builtin']\n",
        "models.a.sources[1]",
        "must be one http(s):// or tgi+http(s):// URL",
        id="replica-not-url",
    ),
    pytest.param(
        "[models.a]\nsources = []\n",
        "models.a.sources",
        "must list at least one URL",
        id="no-replicas",
    ),
    pytest.param(
        "[models.a]\nsource = 'http:///v1'\n",
        "models.a.source",
        "the URL 'http:///v1' names no host",
        id="no-host",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\nparallel = -2\n",
        "models.a.parallel",
        "parallel must be >= 1",
        id="negative-parallel",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\ntimeout = 0\n",
        "models.a.timeout",
        "timeout must be > 0 seconds",
        id="zero-timeout",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\ntimeout = 5\n",
        "models.a.timeout",
        "applies only to upstream URLs (http(s)://, tgi+http(s)://)",
        id="timeout-not-upstream",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\nparallel = 5\n",
        "models.a.parallel",
        "applies only to upstream URLs and models in this process",
        id="parallel-synthetic",
    ),
    pytest.param(
        "[models.a]\nsource = 'builtin'\ncontext_length = 5\n",
        "models.a.context_length",
        "applies only to models not in this process (theirs is [engine] ctx_size)",
        id="context-length-here",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1#m'\nmodel = 'n'\n",
        "models.a.model",
        "the upstream model is also given as #NAME in a source",
        id="model-twice",
    ),
    pytest.param(
        "[models.a]\nsource = 'tgi+http://h'\nmodel = 'n'\n",
        "models.a.model",
        "applies only to OpenAI-compatible URLs, not tgi+ ones",
        id="model-tgi",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\nchat_template = '{{ x }}'\n",
        "models.a.chat_template",
        "applies only to tgi+ URLs (an OpenAI-compatible engine applies its own)",
        id="template-openai",
    ),
    pytest.param(
        "[models.a]\nsource = 'tgi+http://h'\nchat_template = '{% for m in messages %}'\n",
        "models.a.chat_template",
        "bad chat template (line 1): Unexpected end of template. Jinja was looking for the "
        "following tags: 'endfor' or 'else'. The innermost block that needs to be closed is "
        "'for'.",
        id="template-syntax",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\n[models.b]\nsource = 'synthetic'\naliases = ['a']\n",
        "models.b.aliases[0]",
        "alias 'a' is already a model id",
        id="alias-is-id",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\naliases = ['x']\n"
        "[models.b]\nsource = 'synthetic'\naliases = ['x']\n",
        "models.b.aliases[0]",
        "alias 'x' is already given to 'a'",
        id="alias-twice",
    ),
    pytest.param(
        "[server]\ntgi_model = 'gpt-5'\n[models.a]\nsource = 'synthetic'\n",
        "server.tgi_model",
        "TGI model 'gpt-5' is not served; served: a",
        id="tgi-model-unknown",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\n[models.a.defaults]\ntemperature = -1\n",
        "models.a.defaults.temperature",
        "parameter 'temperature' must be > 0, not -1",
        id="bad-default",
    ),
    pytest.param(
        "[models.a]\nsource = 'synthetic'\n[models.a.defaults]\ndetails = true\n",
        "models.a.defaults.details",
        "unknown key (known: temperature, top_k, top_p, typical_p, repetition_penalty, "
        "max_new_tokens, truncate, stop)",
        id="not-a-default",
    ),
    pytest.param(
        "[server]\nqueue_size = -1\n", "server.queue_size", "queue size must be >= 0", id="queue"
    ),
    pytest.param("[server]\nport = 70000\n", "server.port", "port must be 0 to 65535", id="port"),
    pytest.param(
        "[engine]\nthreads = 0\n", "engine.threads", "threads must be >= 1", id="engine-threads"
    ),
    pytest.param(
        "[server]\nlog_level = 'verbose'\n",
        "server.log_level",
        "must be one of debug, info, warning, error",
        id="log-level",
    ),
    pytest.param(
        "[server]\ndb = 'mysql://h/chat'\n",
        "server.db",
        "unknown database URL scheme 'mysql': give a SQLite file path or a postgresql:// URL",
        id="db-scheme",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\napi_key_env = 'NOT_SET_HERE'\n",
        "models.a.api_key_env",
        "environment variable NOT_SET_HERE is not set",
        id="env-missing",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\nheaders = { 'X Team' = 'chat' }\n",
        'models.a.headers."X Team"',
        "not a valid HTTP header name",
        id="header-name",
    ),
    pytest.param(
        "[models.a]\nsource = 'http://h/v1'\nca_bundle = 'ca.pem'\n",
        "models.a.ca_bundle",
        "applies only to https:// URLs",
        id="ca-bundle-http",
    ),
]


@pytest.mark.parametrize(("text", "key", "problem"), BROKEN)
def test_a_broken_file_is_one_line_naming_the_key_and_the_problem(
    tmp_path: Path, text: str, key: str | None, problem: str
) -> None:
    path = tmp_path / "h2o-chat.toml"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path, {})
    assert (caught.value.key, caught.value.problem) == (key, problem)
    assert str(caught.value) == (f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
    assert "\n" not in str(caught.value)


SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"[server]\napi_key = '{SECRET}'\n", "server.api_key"),
        (f"[models.a]\nsource = 'http://h/v1'\napi_key = '{SECRET}'\n", "models.a.api_key"),
        (
            f"[models.a]\nsource = 'http://h/v1'\n"
            f"headers = {{ Authorization = 'Bearer {SECRET}' }}\n",
            "models.a.headers.Authorization",
        ),
    ],
)
def test_a_key_written_in_the_file_is_refused_without_showing_it(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "h2o-chat.toml", {})
    assert (caught.value.key, caught.value.problem) == (key, INLINE_KEY)
    assert SECRET not in str(caught.value)


def test_a_key_given_as_the_variable_name_is_refused_without_showing_it(tmp_path: Path) -> None:
    text = f"[models.a]\nsource = 'http://h/v1'\napi_key_env = '{SECRET}'\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "h2o-chat.toml", {SECRET: "x"})
    assert caught.value.key == "models.a.api_key_env"
    assert caught.value.problem == (
        "must be the name of an environment variable (A-Z, 0-9 and _), not the key itself"
    )
    assert SECRET not in str(caught.value)


def test_an_empty_key_variable_is_not_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable SERVER_KEY is not set"):
        parse_config(
            "[server]\napi_key_env = 'SERVER_KEY'\n", tmp_path / "c.toml", {"SERVER_KEY": ""}
        )


def test_a_ca_bundle_must_be_a_file_of_pem_certificates(tmp_path: Path) -> None:
    path = tmp_path / "h2o-chat.toml"
    text = "[models.a]\nsource = 'https://h/v1'\nca_bundle = 'certs/ca.pem'\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path, {})
    assert caught.value.key == "models.a.ca_bundle"
    assert caught.value.problem == f"no file at {tmp_path / 'certs/ca.pem'}"
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path, {})
    assert caught.value.key == "models.a.ca_bundle"
    assert caught.value.problem.startswith(f"no PEM certificates in {tmp_path / 'certs/ca.pem'}")


def test_a_missing_gguf_is_looked_for_beside_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("[models.a]\nsource = 'm.gguf'\n", tmp_path / "h2o-chat.toml", {})
    assert caught.value.key == "models.a.source"
    assert caught.value.problem.startswith(f"no GGUF file at {tmp_path / 'm.gguf'}")


def test_a_model_id_is_quoted_in_the_key_when_toml_would_quote_it(tmp_path: Path) -> None:
    text = "[models.'Qwen/Qwen2.5-7B']\nsource = 'synthetic'\nparalel = 1\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "h2o-chat.toml", {})
    assert caught.value.key == 'models."Qwen/Qwen2.5-7B".paralel'


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.toml", {})
    assert (
        str(caught.value)
        == f"{tmp_path / 'missing.toml'}: cannot read it: No such file or directory"
    )
    (tmp_path / "latin1.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read it: not UTF-8 text"):
        load_config(tmp_path / "latin1.toml", {})
