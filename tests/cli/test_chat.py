"""``h2o-chat chat``: driven in a real terminal with pexpect, and scripted through a pipe."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.cli import GREEDY, JAPAN, LONG, LONG_PROMPT, h2o_chat, spawn
from tests.support.servers import RunningServer

PROMPT = ">>>"


@pytest.fixture
def terminal_env(cli_env: dict[str, str]) -> dict[str, str]:
    # pexpect's terminal does not answer prompt_toolkit's cursor-position requests
    return {**cli_env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}


def spawn_chat(url: str, env: dict[str, str], *args: str) -> pexpect.spawn:
    """``h2o-chat chat`` in a pseudo-terminal, at its first prompt."""
    child = spawn("chat", "--url", url, *args, env=env, dimensions=(40, 200))
    child.expect("Chatting with SmolLM2-135M-Instruct")
    child.expect(PROMPT)
    return child


@pytest.fixture
def chat(server: RunningServer, terminal_env: dict[str, str]) -> Iterator[pexpect.spawn]:
    child = spawn_chat(server.url, terminal_env, *GREEDY)
    yield child
    child.close(force=True)


def ask(child: pexpect.spawn, text: str, expected: str) -> None:
    child.sendline(text)
    child.expect(expected)
    child.expect(PROMPT)


def test_two_turns_new_and_ctrl_d(chat: pexpect.spawn) -> None:
    ask(chat, JAPAN, "Tokyo")
    ask(chat, "And of France?", "Paris")  # the question only makes sense in the conversation
    ask(chat, "/new", re.escape("(new conversation with SmolLM2-135M-Instruct)"))
    ask(chat, JAPAN, "Tokyo")
    chat.sendeof()
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_ctrl_c_stops_the_answer_and_the_next_turn_works(
    server: RunningServer, terminal_env: dict[str, str]
) -> None:
    chat = spawn_chat(server.url, terminal_env, *LONG)
    chat.sendline(LONG_PROMPT)
    chat.expect(r"(\d+, ){12}")  # the 2500-token answer is streaming
    chat.sendintr()
    chat.expect(re.escape("[stopped]"))
    chat.expect(PROMPT)
    assert "/stop-generating" in server.log()
    # the model is free again at once: otherwise this would wait for 2500 tokens
    ask(chat, JAPAN, "Tokyo")
    chat.sendline("/exit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_ctrl_c_at_the_prompt_clears_the_line(chat: pexpect.spawn) -> None:
    chat.send("half a question")
    chat.sendintr()
    chat.expect(PROMPT)
    ask(chat, "/model", "served: SmolLM2-135M-Instruct")
    ask(chat, "/model gpt-99", "'gpt-99' is not served")
    ask(chat, "/system Answer in French.", re.escape("system prompt set"))
    ask(chat, "/help", "/exit")


def test_multi_line_input_and_history_across_runs(
    server: RunningServer, terminal_env: dict[str, str]
) -> None:
    child = spawn_chat(server.url, terminal_env, *GREEDY)
    child.send("What is the capital\\\r")  # a trailing backslash continues the message
    child.send("\x1b\r")  # Esc Enter (Alt-Enter) also starts a new line
    child.send("of Japan?\r")
    child.expect("Tokyo")
    child.expect(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)

    child = spawn_chat(server.url, terminal_env, *GREEDY)
    child.send("\x1b[A")  # Up: the previous run's message comes back
    child.expect("of Japan")
    child.close(force=True)
    history = Path(terminal_env["XDG_DATA_HOME"]) / "h2o-chat" / "chat_history"
    assert "+What is the capital\n+\n+of Japan?" in history.read_text()


def test_piped_chat_keeps_one_server_conversation(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    script = f"{JAPAN}\nAnd of \\\nFrance?\n/new\n{JAPAN}\n"
    result = h2o_chat("-v", "chat", "--url", server.url, *GREEDY, env=cli_env, stdin=script)
    assert result.returncode == 0, result.stderr
    answers = result.stdout.splitlines()
    assert len(answers) == 3  # no prompts or notes when stdin is not a terminal
    assert "Tokyo" in answers[0]
    assert "Paris" in answers[1]
    assert "Tokyo" in answers[2]
    created = re.findall(r"POST \S+/conversation \"HTTP/1.1 200", result.stderr)
    turns = re.findall(r"POST \S+/conversation/([0-9a-f]{24}) ", result.stderr)
    assert len(created) == 2  # one conversation, then /new
    assert turns[0] == turns[1] != turns[2]


def test_piped_chat_fails_on_a_bad_command(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("chat", "--url", server.url, env=cli_env, stdin="/model gpt-99\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: model 'gpt-99' is not served; the server serves: SmolLM2-135M-Instruct"
    ]
