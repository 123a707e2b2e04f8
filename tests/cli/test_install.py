"""``pip install h2o-chat`` without extras: the client commands work, the server ones say
which extra to install. Slow-ish: the first test builds a fresh virtualenv (pip's cache keeps
it to seconds after the first run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import GREEDY, H2O_CHAT, JAPAN, h2o_chat, one_error_line
from tests.support.servers import RunningServer, free_port

REPO = Path(__file__).resolve().parents[2]
SERVER_EXTRA = "pip install 'h2o-chat[server]'"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[str]:
    """The ``h2o-chat`` script of a new virtualenv holding the project and no extras."""
    venv = tmp_path_factory.mktemp("plain-install") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--disable-pip-version-check", str(REPO)], check=True)
    return (str(venv / "bin" / "h2o-chat"),)


def test_help_works_without_the_server(plain: tuple[str], cli_env: dict[str, str]) -> None:
    for command in ((), ("ask",), ("chat",), ("models",)):
        result = h2o_chat(*command, "--help", env=cli_env, program=plain)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: h2o-chat")


def test_client_commands_work_without_the_server(
    plain: tuple[str], server: RunningServer, cli_env: dict[str, str]
) -> None:
    ask = h2o_chat("ask", "--url", server.url, *GREEDY, JAPAN, env=cli_env, program=plain)
    assert ask.returncode == 0, ask.stderr
    assert "Tokyo" in ask.stdout

    args = ("chat", "--url", server.url, *GREEDY)
    chat = h2o_chat(*args, env=cli_env, stdin=JAPAN + "\n", program=plain)
    assert chat.returncode == 0, chat.stderr
    assert "Tokyo" in chat.stdout

    models = h2o_chat("models", "--url", server.url, "--json", env=cli_env, program=plain)
    assert models.returncode == 0, models.stderr
    assert [m["id"] for m in json.loads(models.stdout)] == ["SmolLM2-135M-Instruct"]

    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(h2o_chat("ask", "--url", url, JAPAN, env=cli_env, program=plain))
    assert f"cannot connect to {url}" in line


def test_server_commands_name_the_extra(plain: tuple[str], cli_env: dict[str, str]) -> None:
    embedded = one_error_line(h2o_chat("ask", JAPAN, env=cli_env, program=plain))
    assert embedded.startswith("error: the built-in model")
    assert SERVER_EXTRA in embedded
    assert "--url" in embedded  # the other way out

    serve = one_error_line(h2o_chat("serve", env=cli_env, program=plain))
    assert serve.startswith("error: 'h2o-chat serve' needs the server extra")
    assert SERVER_EXTRA in serve


def test_the_client_commands_import_nothing_of_the_server(cli_env: dict[str, str]) -> None:
    """Even with the server installed, ``ask --url`` loads none of it."""
    code = (
        "import sys; from h2o_chat.cli import main; "
        "assert main(['ask', '--url', 'http://127.0.0.1:9', 'hi']) == 1; "
        "print(sorted(m for m in sys.modules if m.startswith('h2o_chat.server')))"
    )
    result = subprocess.run(
        [H2O_CHAT[0], "-c", code], capture_output=True, text=True, env=cli_env, check=True
    )
    assert result.stdout.strip() == "[]"
