"""Fixtures of the reliability cases; their helpers live in :mod:`tests.support.lab`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.lab import TEST_MODELS, Lab, lab


@pytest.fixture(scope="module")
def test_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server with the synthetic echo model and the misbehaving test engines."""
    with lab(tmp_path_factory.mktemp("lab"), *TEST_MODELS) as running:
        yield running
