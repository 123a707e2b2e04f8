"""With no --url and no H2O_CHAT_URL the commands run the builtin model in-process."""

from __future__ import annotations

import json

import pexpect

from tests.support.cli import GREEDY, JAPAN, h2o_chat, spawn

NOTICE = "h2o-chat: no --url given; running the built-in model SmolLM2-135M-Instruct locally"


def test_ask_answers_with_the_embedded_default(cli_env: dict[str, str]) -> None:
    result = h2o_chat("ask", *GREEDY, JAPAN, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout
    # one line saying so, and no spinner when stderr is not a terminal
    assert result.stderr.splitlines() == [NOTICE]


def test_models_and_chat_use_the_embedded_default(cli_env: dict[str, str]) -> None:
    models = h2o_chat("models", "--json", env=cli_env)
    assert models.returncode == 0, models.stderr
    assert [m["id"] for m in json.loads(models.stdout)] == ["SmolLM2-135M-Instruct"]
    assert models.stderr.splitlines() == [NOTICE]

    chat = h2o_chat("chat", *GREEDY, env=cli_env, stdin=JAPAN + "\n")
    assert chat.returncode == 0, chat.stderr
    assert "Tokyo" in chat.stdout


def test_unknown_model_names_the_builtin_one(cli_env: dict[str, str]) -> None:
    result = h2o_chat("ask", "-m", "gpt-99", JAPAN, env=cli_env)
    assert result.returncode == 1
    notice, error = result.stderr.splitlines()
    assert notice == NOTICE
    assert error.startswith("error: unknown model 'gpt-99'")
    assert "SmolLM2-135M-Instruct" in error


def test_a_terminal_sees_a_spinner_while_the_model_loads(cli_env: dict[str, str]) -> None:
    child = spawn("ask", *GREEDY, JAPAN, env=cli_env)
    child.expect_exact(NOTICE)
    child.expect_exact("loading SmolLM2-135M-Instruct…")
    child.expect_exact("\x1b[K")  # the spinner's line is cleared before the answer
    child.expect("Tokyo")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
