"""``h2o-chat ask`` as a subprocess against a real server with the builtin model."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import GREEDY, JAPAN, LONG, LONG_PROMPT, h2o_chat, one_error_line, start
from tests.support.servers import RunningServer, free_port, h2o_server, run_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose only model writes two tokens and then fails."""
    model = ("--model", "broken=python:tests.support.backends:failing")
    env = {"PYTHONPATH": str(REPO)}
    with h2o_server(tmp_path_factory.mktemp("broken-server"), *model, env=env) as running:
        yield running


def test_ask_streams_the_answer_to_stdout(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("ask", "--url", server.url, *GREEDY, JAPAN, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout
    assert result.stdout.endswith("\n")
    assert "<|" not in result.stdout  # special tokens are not printed
    assert result.stderr == ""


def test_ask_prints_tokens_before_the_answer_is_complete(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    with start("ask", "--url", server.url, *LONG, LONG_PROMPT, env=cli_env) as process:
        assert process.stdout is not None
        first = os.read(process.stdout.fileno(), 64)
        # text arrived while the 2500-token answer is still being generated
        assert first.strip()
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"Traceback" not in stderr
    assert "stop-generating" in server.log()


def test_ask_json_lines_end_with_the_result(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("ask", "--url", server.url, "--json", *GREEDY, JAPAN, env=cli_env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    *tokens, final = lines
    assert tokens and all(line["type"] == "token" for line in tokens)
    assert set(tokens[0]) == {"type", "id", "text", "logprob", "special"}
    assert final["type"] == "result"
    assert "Tokyo" in final["text"]
    assert final["finish_reason"] in ("eos_token", "stop_sequence", "length")
    assert final["generated_tokens"] == len(tokens)
    assert len(final["conversation_id"]) == 24
    assert set(final["timings"]) == {"first_token_s", "total_s", "tokens_per_s"}
    assert final["text"].strip() == "".join(t["text"] for t in tokens if not t["special"]).strip()


def test_ask_no_stream_prints_the_whole_answer(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    result = h2o_chat("ask", "--url", server.url, "--no-stream", *GREEDY, JAPAN, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout


def test_ask_no_stream_json_prints_only_the_result(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    args = ("ask", "--url", server.url, "--no-stream", "--json", *GREEDY, JAPAN)
    result = h2o_chat(*args, env=cli_env)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["type"] == "result"


def test_ask_reads_the_prompt_from_stdin(server: RunningServer, cli_env: dict[str, str]) -> None:
    piped = h2o_chat("ask", "--url", server.url, *GREEDY, env=cli_env, stdin=JAPAN + "\n")
    dash = h2o_chat("ask", "--url", server.url, *GREEDY, "-", env=cli_env, stdin=JAPAN)
    for result in (piped, dash):
        assert result.returncode == 0, result.stderr
        assert "Tokyo" in result.stdout


def test_ask_uses_h2o_chat_url(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("ask", *GREEDY, JAPAN, env={**cli_env, "H2O_CHAT_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout
    assert result.stderr == ""  # no embedded server was started


def test_ask_system_prompt_reaches_the_conversation(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    args = ("ask", "--url", server.url, "--json", *GREEDY, "--system", "Answer in one word.")
    result = h2o_chat(*args, JAPAN, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in json.loads(result.stdout.splitlines()[-1])["text"]


def test_unreachable_url_is_one_line_with_what_to_do(cli_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(h2o_chat("ask", "--url", url, JAPAN, env=cli_env))
    assert f"cannot connect to {url}" in line
    assert "h2o-chat serve" in line

    line = one_error_line(h2o_chat("ask", JAPAN, env={**cli_env, "H2O_CHAT_URL": url}))
    assert "unset H2O_CHAT_URL" in line


def test_a_url_that_is_not_an_h2o_server_is_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with run_process(argv, port, tmp_path / "http.log", "/") as web:
        line = one_error_line(h2o_chat("ask", "--url", web.url, JAPAN, env=cli_env))
    # the 404 page's HTML is left out: its status phrase says enough
    assert line == (
        f"error: HTTP 404 from GET /api/models: File not found. Is {web.url} an h2o-chat server?"
    )


def test_a_url_without_its_scheme_is_refused(cli_env: dict[str, str]) -> None:
    line = one_error_line(h2o_chat("ask", "--url", "localhost:8000", JAPAN, env=cli_env))
    assert "'localhost:8000' is not an http(s) URL" in line
    env = {**cli_env, "H2O_CHAT_URL": "localhost:8000"}
    line = one_error_line(h2o_chat("models", env=env))
    assert line.startswith("error: H2O_CHAT_URL 'localhost:8000'")


def test_unknown_model_lists_the_served_models(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    result = h2o_chat("ask", "--url", server.url, "-m", "no-such-model", JAPAN, env=cli_env)
    line = one_error_line(result)
    assert "no-such-model" in line
    assert "SmolLM2-135M-Instruct" in line
    assert result.stdout == ""


def test_bad_param_is_refused_before_any_request(cli_env: dict[str, str]) -> None:
    # nothing listens at the URL: the parameter error comes first
    url = f"http://127.0.0.1:{free_port()}"
    for param, named in [
        ("temperature=-1", "temperature"),
        ("max_new_tokens=many", "max_new_tokens"),
        ("no_such_param=1", "no_such_param"),
        ("do_sample", "do_sample"),
        ('stop=["a"', "not valid JSON"),  # a broken list is not sent as the text '["a"'
    ]:
        line = one_error_line(h2o_chat("ask", "--url", url, "-p", param, JAPAN, env=cli_env))
        assert named in line
        assert "--param" in line


def test_request_the_server_refuses_says_what_to_change(
    server: RunningServer, cli_env: dict[str, str]
) -> None:
    args = ("ask", "--url", server.url, "-p", "max_new_tokens=100000", JAPAN)
    line = one_error_line(h2o_chat(*args, env=cli_env))
    assert f"{server.url} refused the request" in line
    assert "max_new_tokens" in line
    assert "--param" in line


def test_typed_params_reach_the_server(server: RunningServer, cli_env: dict[str, str]) -> None:
    args = ("ask", "--url", server.url, "--json", "-p", "max_new_tokens=3", *LONG[2:4])
    result = h2o_chat(*args, "-p", 'stop=["\\n\\n"]', LONG_PROMPT, env=cli_env)
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["generated_tokens"] == 3
    assert final["finish_reason"] == "length"


def test_no_prompt_at_all_is_an_error(cli_env: dict[str, str]) -> None:
    line = one_error_line(h2o_chat("ask", "--url", "http://127.0.0.1:9", env=cli_env, stdin=""))
    assert "empty" in line


def test_error_mid_answer_keeps_the_text_and_fails(
    broken_server: RunningServer, cli_env: dict[str, str]
) -> None:
    result = h2o_chat("ask", "--url", broken_server.url, "hi", env=cli_env)
    line = one_error_line(result)
    assert "the model failed while answering (generation)" in line
    assert result.stdout == "one two\n"  # the text so far, then the line ends


def test_json_error_mid_answer_ends_with_an_error_line(
    broken_server: RunningServer, cli_env: dict[str, str]
) -> None:
    result = h2o_chat("ask", "--url", broken_server.url, "--json", "hi", env=cli_env)
    one_error_line(result)
    *tokens, last = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["text"] for t in tokens] == ["one", " two"]
    assert last["type"] == "error"
    assert last["error_type"] == "generation"
    assert last["message"]
    assert last["partial_text"] == "one two"
