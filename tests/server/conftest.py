"""Fixtures of the server tests; their helpers live in :mod:`tests.support`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import IMPORTABLE, RunningServer, h2o_server


@pytest.fixture(scope="module")
def builtin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default server: the builtin model with the seed's model ids as aliases."""
    with h2o_server(tmp_path_factory.mktemp("server"), env=IMPORTABLE) as server:
        yield server
