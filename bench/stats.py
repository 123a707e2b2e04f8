"""Timing and statistics shared by every measurement: medians with their spread, paired ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of repeated runs, their interquartile range and their extremes."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    runs: int

    def show(self, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
        """``median [q1-q3]`` (or ``median`` alone when every run agreed), scaled."""

        def fmt(value: float) -> str:
            return f"{value * scale:.{digits}g}"

        spread = "" if self.low == self.high else f" [{fmt(self.q1)}-{fmt(self.q3)}]"
        return f"{fmt(self.median)}{unit}{spread}"


def summarize(samples: Sequence[float]) -> Summary:
    """Median, quartiles and range of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Summary(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered))


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Per-round ratios of two series measured in the same rounds, summarized."""
    return summarize([a / b for a, b in zip(numerators, denominators, strict=True)])


def differences(minuends: Sequence[float], subtrahends: Sequence[float]) -> Summary:
    """Per-round differences of two series measured in the same rounds, summarized."""
    return summarize([a - b for a, b in zip(minuends, subtrahends, strict=True)])


def timed(run: Callable[[], int]) -> float:
    """Items per second of ``run``, which returns how many items it handled."""
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)
