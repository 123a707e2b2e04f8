"""``--help`` texts and usage errors of ``h2o-chat``."""

from __future__ import annotations

import pytest

from tests.support.cli import h2o_chat


@pytest.mark.parametrize("command", [(), ("ask",), ("chat",), ("models",), ("serve",)])
def test_help_shows_examples(command: tuple[str, ...], cli_env: dict[str, str]) -> None:
    result = h2o_chat(*command, "--help", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: h2o-chat")
    examples = result.stdout.split("examples:\n", 1)[1]
    assert examples.lstrip().startswith("h2o-chat ")


def test_chat_help_lists_the_session_commands(cli_env: dict[str, str]) -> None:
    result = h2o_chat("chat", "--help", env=cli_env)
    for command in ("/help", "/new", "/model", "/system", "/exit"):
        assert command in result.stdout


def test_unknown_command_names_the_commands(cli_env: dict[str, str]) -> None:
    result = h2o_chat("frobnicate", env=cli_env)
    assert result.returncode == 2  # argparse's usage error, as for any bad option
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "ask" in result.stderr and "chat" in result.stderr
    assert "Traceback" not in result.stderr
