"""llama.cpp's own HTTP server, from the same ``xllamacpp`` wheel the server embeds: the real
OpenAI-compatible engine of the upstream tests and benchmarks.

``python -m tests.support.engines --model PATH --port N [--parallel N]`` serves on 127.0.0.1
until SIGTERM/SIGINT; :func:`llama_server` runs it as a subprocess for a test. With
``--api-key-file PATH`` it demands the bearer key that file holds on every route but
``/health``, which :func:`llama_server` polls until the model has loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.servers import RunningServer, free_port, run_process

ALIAS = "smol"


@contextlib.contextmanager
def llama_server(
    model: Path, log_dir: Path, *options: str, cpus: str | None = None, port: int | None = None
) -> Iterator[RunningServer]:
    """llama.cpp's server for ``model`` on loopback ``port`` (default: a free one), as the model
    ``smol``; ``cpus`` pins it with ``taskset``."""
    port = port or free_port()
    argv = [sys.executable, "-m", "tests.support.engines", "--model", str(model)]
    argv += ["--port", str(port), *options]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    with run_process(argv, port, log_dir / f"llama-{port}.log", "/health") as server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    from h2o_chat.server.backends.llamacpp_settings import (
        DEFAULT_CTX_SIZE,
        EngineSettings,
        engine_params,
        import_engine,
    )

    defaults = EngineSettings()
    parser = argparse.ArgumentParser(prog="python -m tests.support.engines")
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--parallel", type=int, default=defaults.resolved_parallel())
    parser.add_argument("--ctx-size", type=int, default=DEFAULT_CTX_SIZE, help="per slot")
    parser.add_argument("--threads", type=int, default=defaults.resolved_threads())
    parser.add_argument("--api-key-file", type=Path, help="demand the key this file holds")
    args = parser.parse_args(argv)
    # the settings of the server's in-process engine, but listening on --port, unlocked unless
    # --api-key-file
    params = engine_params(args.model, args.parallel, args.ctx_size, args.threads)
    params.port = args.port
    params.model_alias = {ALIAS}
    if args.api_key_file is not None:
        params.api_keys = [args.api_key_file.read_text().strip()]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    server = import_engine().Server(params)
    print(f"llama.cpp: {args.model.name} as {ALIAS} on {server.listening_address}", flush=True)
    stop.wait()
    del server  # joins llama.cpp's loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
