"""Start the servers the benchmarks talk to, each pinned to its own core.

The machine has two cores: servers run on ``SERVER_CPUS`` and the measuring process on
``CLIENT_CPUS``, so that a reader and the source it reads never fight for one core.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from tests.support.servers import RunningServer, free_port, run_process

CLIENT_CPUS = "0"
SERVER_CPUS = "1"
ALL_CPUS = "0,1"


def _cpus(text: str) -> set[int]:
    return {int(cpu) for cpu in text.split(",")}


@contextlib.contextmanager
def pinned(cpus: str = CLIENT_CPUS) -> Iterator[None]:
    """Run the block with this process pinned to ``cpus``."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _cpus(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def _serve(
    workdir: Path, name: str, argv: Sequence[str], health: str, cpus: str
) -> Iterator[RunningServer]:
    port = free_port()
    command = ["taskset", "-c", cpus, sys.executable, "-m", *argv, "--port", str(port)]
    with run_process(command, port, workdir / f"{name}-{port}.log", health) as server:
        yield server  # taskset execs the server: its pid is the server's


@contextlib.contextmanager
def _url(server: AbstractContextManager[RunningServer]) -> Iterator[str]:
    with server as running:
        yield running.url


def replay(workdir: Path, chunk_bytes: int, cpus: str = SERVER_CPUS) -> AbstractContextManager[str]:
    """The bare Starlette endpoint of :mod:`bench.replay`; yields its base URL."""
    argv = ["bench.replay", "--chunk-bytes", str(chunk_bytes)]
    return _url(_serve(workdir, "replay", argv, "/healthz", cpus))


def h2o_process(
    workdir: Path,
    models: dict[str, str],
    *options: str,
    cpus: str = SERVER_CPUS,
    db: str | None = None,
    module: str = "h2o_chat",
) -> AbstractContextManager[RunningServer]:
    """``h2o-chat serve`` (``python -m module serve``) with ``models`` (id -> source) and
    ``db``, by default a fresh SQLite file."""
    db = db or str(workdir / f"{free_port()}.db")
    argv = [module, "serve", "--host", "127.0.0.1", "--db", db]
    for model_id, source in models.items():
        argv += ["--model", f"{model_id}={source}"]
    return _serve(workdir, "h2o", [*argv, *options], "/healthz", cpus)


def h2o(
    workdir: Path,
    models: dict[str, str],
    *options: str,
    cpus: str = SERVER_CPUS,
    db: str | None = None,
    module: str = "h2o_chat",
) -> AbstractContextManager[str]:
    """:func:`h2o_process`; yields its base URL."""
    return _url(h2o_process(workdir, models, *options, cpus=cpus, db=db, module=module))


def llama_server(
    workdir: Path, model_path: Path, *options: str, cpus: str = ALL_CPUS
) -> AbstractContextManager[str]:
    """llama.cpp's own OpenAI-compatible server, from the xllamacpp wheel the server embeds
    (:mod:`tests.support.engines`), with the in-process engine's settings but ``options``
    (``--threads``, ``--parallel``); model ``smol``."""
    argv = ["tests.support.engines", "--model", str(model_path), *options]
    return _url(_serve(workdir, "llama", argv, "/v1/models", cpus))
