"""Benchmarks of h2o-chat against the seed's code, bare HTTP and llama.cpp's own server.

``python -m bench [--quick]`` runs every measurement (one module each) and writes
``BENCHMARKS.md`` and ``bench/results/plot.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SEED_MODEL = "falcon-40b"  # the seed's short name for the id below
SEED_MODEL_ID = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1"
MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


@dataclass(frozen=True, slots=True)
class Bench:
    """One run's settings: ``quick`` (tiny sizes, for the smoke test) and a scratch directory."""

    quick: bool
    workdir: Path

    def pick(self, full: T, quick: T) -> T:
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full
