"""Cutting a byte string into chunks, for the tests of the incremental parser."""

from __future__ import annotations

import itertools


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the positions ``cuts`` (clamped to its length, in any order)."""
    points = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]
