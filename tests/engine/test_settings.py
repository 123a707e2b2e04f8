"""The in-process engine's defaults for a machine, and settings that cannot work."""

from __future__ import annotations

import pytest

from h2o_chat.server.backends.llamacpp_settings import (
    EngineSettings,
    available_cpus,
    default_parallel,
)

GiB = 1 << 30


@pytest.mark.parametrize(
    ("cpus", "memory", "slots"),
    [
        (1, 16 * GiB, 4),  # at least 4: batching pays even on one core
        (2, 24 * GiB, 8),  # this machine
        (8, 64 * GiB, 16),  # at most 16
        (2, 1 * GiB, 4),  # one slot per 256 MiB of RAM
        (2, 100 << 20, 1),
        (2, None, 8),  # memory unknown
    ],
)
def test_default_parallel(cpus: int, memory: int | None, slots: int) -> None:
    assert default_parallel(cpus, memory) == slots


def test_defaults_come_from_the_machine() -> None:
    settings = EngineSettings()
    assert settings.resolved_threads() == available_cpus()
    assert 1 <= settings.resolved_parallel() <= 16


def test_given_settings_win() -> None:
    settings = EngineSettings(parallel=3, threads=1, ctx_size=512)
    assert (settings.resolved_parallel(), settings.resolved_threads()) == (3, 1)


@pytest.mark.parametrize("field", ["parallel", "threads", "ctx_size"])
def test_settings_below_one_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        EngineSettings(**{field: 0})
