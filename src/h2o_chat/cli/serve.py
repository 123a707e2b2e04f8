"""``h2o-chat serve``: run the H2o-compatible server (and its OpenAI front door).

Its options come from the server package, so this module is imported only when ``serve``
runs (``h2o_chat.cli._serve``): the other commands work without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from h2o_chat.server.backends.llamacpp_settings import (
    DEFAULT_CTX_SIZE,
    EngineSettings,
    available_cpus,
    default_parallel,
    physical_memory,
)
from h2o_chat.server.backends.sources import SOURCE_HELP
from h2o_chat.server.config import (
    BUILTIN_MODEL_ID,
    DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_UPSTREAM_PARALLEL,
    DEFAULT_UPSTREAM_TIMEOUT,
    LOG_LEVELS,
    ModelSpec,
    ServerConfig,
    parse_alias,
    parse_model_spec,
)
from h2o_chat.server.config_file import ConfigError, FileConfig, load_config
from h2o_chat.server.store.base import default_database, parse_database

API_KEY_ENV = "H2O_CHAT_API_KEY"

T = TypeVar("T")

EPILOG = f"""\
{SOURCE_HELP}

With no --model, the builtin model is served as {BUILTIN_MODEL_ID}, with the 2023 provider's
three H2o model ids (h2oai/h2ogpt-gm-...) as its aliases.

examples:
  h2o-chat serve
  h2o-chat serve --config h2o-chat.toml   (README: Config file)
  h2o-chat serve --model smol=builtin --model big=/models/qwen2.5-7b.Q4_K_M.gguf
  h2o-chat serve --model qwen=http://127.0.0.1:8080/v1#qwen2.5-7b-instruct --alias q=qwen"""


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type that reports the parser's own message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    """The options of ``h2o-chat serve``, with the server's own defaults."""
    parser = argparse.ArgumentParser(
        prog="h2o-chat serve",
        description="Run the H2o-compatible chat server, with its OpenAI front door on /v1.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = parser.add_mutually_exclusive_group()
    files.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="models and options from a TOML file; the options given here override it",
    )
    files.add_argument(
        "--check-config",
        type=Path,
        metavar="FILE.toml",
        help="check FILE.toml (with the options given here) without serving: a summary and "
        "exit 0, or the problem and exit 2",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    parser.add_argument(
        "--model",
        metavar="ID=SOURCE",
        action="append",
        type=_argument(parse_model_spec),
        help="serve SOURCE as model ID (repeatable; SOURCE forms below)",
    )
    parser.add_argument(
        "--alias",
        metavar="NAME=ID",
        action="append",
        type=_argument(parse_alias),
        help="another name for a served model (repeatable)",
    )
    parser.add_argument(
        "--db",
        type=_argument(parse_database),
        default=None,
        metavar="PATH|URL",
        help="where sessions and conversations live: a SQLite file, or a postgresql:// URL "
        f"shared by several replicas (default {default_database()})",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=DEFAULT_QUEUE_SIZE,
        help="requests that may wait for a busy model; more get 'overloaded' (%(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies get 413 (%(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require 'Authorization: Bearer KEY' on /v1, the TGI routes and /metrics "
        f"(default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--upstream-timeout",
        type=float,
        default=DEFAULT_UPSTREAM_TIMEOUT,
        metavar="SECONDS",
        help="read timeout for OpenAI-compatible upstreams (%(default)s)",
    )
    parser.add_argument(
        "--upstream-parallel",
        type=int,
        default=DEFAULT_UPSTREAM_PARALLEL,
        metavar="N",
        help="generations an upstream model runs at once, for the engine to batch (%(default)s)",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=DEFAULT_KEEP_ALIVE,
        metavar="SECONDS",
        help="send a ':' comment on a silent stream after this long (%(default)s)",
    )
    parser.add_argument(
        "--tgi-model",
        metavar="NAME",
        help="the model TGI's root routes (/generate, /info, ...) serve (default: the first "
        "--model); every model is also a TGI endpoint at /models/ID",
    )
    engine = parser.add_argument_group(
        "models in this process (builtin, PATH.gguf: llama.cpp, continuous batching)"
    )
    engine.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="slots: generations decoded together per model "
        f"(default here: {default_parallel(available_cpus(), physical_memory())}, "
        "4 per CPU, 4 to 16, one per 256 MiB of RAM at most)",
    )
    engine.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"generation threads per model (default: the CPUs available, here {available_cpus()})",
    )
    engine.add_argument(
        "--ctx-size",
        type=int,
        metavar="TOKENS",
        help="each slot's context, its own KV cache: the most one request may use, prompt + "
        "max_new_tokens; a longer one gets a validation error. Memory: slots x this x the "
        f"model's KV size per token (12 KB for SmolLM2) (default {DEFAULT_CTX_SIZE}, at most the "
        "model's own)",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    return parser


def main(argv: Sequence[str]) -> int:
    """``h2o-chat serve ARGV``: a config file's options become the defaults of the command
    line's, so those given on it win."""
    parser = build_parser()
    args = parser.parse_args(argv)
    path = args.config or args.check_config
    if path is None:
        return run(args)
    try:
        file = load_config(path)
    except ConfigError as exc:
        return _error(exc)
    parser.set_defaults(**file.options)
    if file.api_key_env is not None:
        parser.set_defaults(api_key=os.environ[file.api_key_env])
    return run(parser.parse_args(argv), file)


def run(args: argparse.Namespace, file: FileConfig | None = None) -> int:
    """Serve until SIGINT/SIGTERM; exit code 0 after a clean shutdown (or a good
    ``--check-config``), 2 for a configuration that cannot serve."""
    try:
        config = ServerConfig(
            models=_models(file.models if file else (), args.model or ()),
            aliases={**(file.aliases if file else {}), **dict(args.alias or ())},
            db=args.db or default_database(),
            host=args.host,
            port=args.port,
            queue_size=args.queue_size,
            max_body_bytes=args.max_body_bytes,
            api_key=args.api_key or None,
            upstream_timeout=args.upstream_timeout,
            upstream_parallel=args.upstream_parallel,
            keep_alive=args.keep_alive,
            tgi_model=args.tgi_model,
            engine=EngineSettings(args.parallel, args.threads, args.ctx_size),
        )
    except ValueError as exc:
        return _error(exc)
    if args.check_config:
        aliases = len(config.aliases)
        print(
            f"{args.check_config}: ok: {len(config.models)} models ({', '.join(config.model_ids)})"
            f", {aliases} aliases, on {config.host}:{config.port}",
            flush=True,
        )
        return 0

    from h2o_chat.server.process import serve

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def announce(url: str) -> None:
        print(f"h2o-chat serving {', '.join(config.model_ids)} on {url}", flush=True)

    return serve(config, announce)


def _models(in_file: Sequence[ModelSpec], given: Sequence[ModelSpec]) -> tuple[ModelSpec, ...]:
    """The file's models, each replaced by a ``--model`` of its id; then the other ``--model``s."""
    replacing = {spec.id: spec for spec in given}
    kept = [replacing.pop(spec.id, spec) for spec in in_file]
    return (*kept, *(spec for spec in given if spec.id in replacing))


def _error(exc: ValueError) -> int:
    print(f"h2o-chat serve: error: {exc}", file=sys.stderr)
    return 2
