"""How a model in this process runs: the defaults a machine gets, and llama.cpp's parameters.

Kept apart from the backend so that ``h2o-chat serve --help`` can show the defaults without
loading the engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOTS_PER_CPU = 4  # ~8 streams saturate 2 cores (BENCHMARKS.md); more slots only add latency
MAX_DEFAULT_PARALLEL = 16
MEMORY_PER_SLOT = 256 << 20  # bytes of RAM per default slot: 1 GiB gives 4 slots
# The 2023 defaults (truncate 2048 + max_new_tokens 1024) always fit a slot. SmolLM2's KV
# cache, at q8_0, is 12 KB a token: 8 slots of 3072 tokens take 300 MB.
DEFAULT_CTX_SIZE = 3072
KV_CACHE_TYPE = 8  # ggml's q8_0: half of f16's memory, the same answers on SmolLM2
FLASH_ATTENTION_ON = 1
PROMPT_BATCH = 512  # prompt tokens per decode step: a long prompt stalls others <= one step
HTTP_THREADS = 4  # the private listener only tokenizes and renders templates
OPENMP_SPIN_COUNT = 10_000  # see import_engine


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, so ``taskset`` and cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_memory() -> int | None:
    """Bytes of RAM, if the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_parallel(cpus: int, memory: int | None) -> int:
    """Slots for a machine: 4 per CPU, 4 to 16, and no more than one per 256 MiB of RAM."""
    slots = min(max(SLOTS_PER_CPU * cpus, SLOTS_PER_CPU), MAX_DEFAULT_PARALLEL)
    if memory is not None:
        slots = min(slots, max(1, memory // MEMORY_PER_SLOT))
    return slots


def import_engine() -> Any:
    """The ``xllamacpp`` module, its OpenMP threads set to spin only briefly while they wait.

    llama.cpp's threads meet at a barrier several times per token. OpenMP's default spins up
    to 300,000 times before sleeping: fastest on idle cores, but when another process (or this
    server's own event loop) takes a core, the others spin through the scheduler's time slices
    at every barrier. Measured here, 2 threads on 2 cores through the server (1 / 8 streams,
    tokens/s): spinning 10,000 times 91 / 173 idle and 41 / 47 beside two busy processes;
    the default 95 / 173 and 26 / 28, or 1-5 under heavier load; never spinning 41 / 131 and
    23 / 65. OpenMP reads this once, when the library loads; a setting of the user's is kept.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))
    import xllamacpp

    return xllamacpp


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How a model in this process runs; ``None`` picks the default for this machine.

    ``ctx_size`` is each slot's context: the most a request may use (prompt +
    ``max_new_tokens``), the model's context length as served.
    """

    parallel: int | None = None
    threads: int | None = None
    ctx_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("parallel", "threads", "ctx_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 1")

    def resolved_parallel(self) -> int:
        return self.parallel or default_parallel(available_cpus(), physical_memory())

    def resolved_threads(self) -> int:
        return self.threads or available_cpus()


def engine_params(path: Path, parallel: int, ctx_size: int, threads: int) -> Any:
    """``xllamacpp.CommonParams`` for ``path`` served from ``parallel`` slots of ``ctx_size``
    tokens each, listening on a free loopback port (give it an API key before starting it)."""
    params = import_engine().CommonParams()
    params.model.path = str(path)
    params.n_parallel = parallel
    params.n_ctx = parallel * ctx_size
    params.kv_unified = False  # a cache per slot, of ctx_size tokens each
    params.cache_type_k = params.cache_type_v = KV_CACHE_TYPE
    params.flash_attn_type = FLASH_ATTENTION_ON  # llama.cpp needs it for a q8_0 V cache
    params.cache_ram_mib = 0  # no host-memory prompt cache: memory stays bounded
    params.fit_params = False  # keep n_ctx as given
    params.ctx_shift = False  # never drop context silently
    params.n_batch = params.n_ubatch = PROMPT_BATCH
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # any free port
    params.ui = False
    params.n_threads_http = HTTP_THREADS
    params.verbosity = 0  # errors only
    return params
