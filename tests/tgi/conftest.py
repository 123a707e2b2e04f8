"""Servers shared by the TGI route tests, started once for the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import RunningServer
from tests.tgi.servers import BACKENDS, serve


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Synthetic and misbehaving engines; ``echo`` is the default model, also ``team/echo``."""
    with serve(
        tmp_path_factory.mktemp("lab"),
        *("--model", "echo=synthetic"),
        *("--model", "five=synthetic:5"),
        *("--model", "many=synthetic:100"),
        *("--model", f"failing={BACKENDS}:failing"),
        *("--model", f"incomplete={BACKENDS}:incomplete"),
        *("--alias", "team/echo=echo"),
    ) as server:
        yield server


@pytest.fixture(scope="package")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One slow model and no queue: a second request while it generates is overloaded."""
    args = ("--model", f"slow={BACKENDS}:slow", "--queue-size", "0")
    with serve(tmp_path_factory.mktemp("busy"), *args) as server:
        yield server


@pytest.fixture(scope="package")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The built-in model, in-process, as ``smol`` and the default TGI model."""
    with serve(tmp_path_factory.mktemp("builtin"), "--model", "smol=builtin") as server:
        yield server
