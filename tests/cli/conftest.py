"""A real server with the builtin model for the CLI tests, and a clean user environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import RunningServer, h2o_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with h2o_server(tmp_path_factory.mktemp("cli-server")) as running:
        yield running


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with nothing configured (history under ``tmp_path``)."""
    env = {k: v for k, v in os.environ.items() if k != "H2O_CHAT_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return env
