"""With nothing configured, the provider answers from the built-in model started in-process,
and the library starts one on request (:mod:`h2o_chat.local`).

The provider's cases run in fresh interpreters with ``H2O_CHAT_URL`` unset, under an audit
hook that records every socket the process connects to and every name it looks up.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from h2o_chat import (
    AsyncClient,
    Client,
    ConnectError,
    local_async_client,
    local_client,
    local_server,
)

JAPAN = [{"role": "user", "content": "What is the capital of Japan?"}]
STARTED = "running the built-in model SmolLM2-135M-Instruct locally at http://127.0.0.1:"
SEED_IDS = (
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
    "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
    "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
)

# Put before each script: the audit hook, and the h2o_chat log records (nothing printed);
# the report is written to $REPORT by the last exit hook, after the server has stopped.
PRELUDE = """\
import atexit, json, logging, os, socket, sys

_report = {"connects": [], "lookups": [], "sockets": 0, "log": []}


def _audit(event, args):
    if event == "socket.connect":
        _report["connects"].append(args[1])
    elif event == "socket.getaddrinfo":
        _report["lookups"].append(args[0])
    elif event == "socket.__new__" and args[1] in (socket.AF_INET, socket.AF_INET6):
        _report["sockets"] += 1  # network sockets (an event loop has a socketpair of its own)


sys.addaudithook(_audit)


class _Records(logging.Handler):
    def emit(self, record):
        _report["log"].append([record.name, record.levelname, record.getMessage()])


logging.getLogger("h2o_chat").addHandler(_Records())
logging.getLogger("h2o_chat").setLevel(logging.INFO)


def _write_report():
    with open(os.environ["REPORT"], "w") as out:
        json.dump(_report, out, default=str)


atexit.register(_write_report)
"""


@dataclass
class Run:
    """A finished script: its output, and what the audit hook and the log saw."""

    result: subprocess.CompletedProcess[str]
    connects: list[Any]
    lookups: list[str]
    sockets: int  # AF_INET and AF_INET6 sockets created
    log: list[tuple[str, str, str]]

    def started(self) -> list[str]:
        """The INFO lines of the h2o_chat logger saying a built-in server started."""
        return [m for name, level, m in self.log if name == "h2o_chat" and m.startswith(STARTED)]

    def loopback_ports(self) -> set[int]:
        """The ports connected to, after checking that every address was a loopback one."""
        hosts = [address[0] for address in self.connects] + self.lookups
        elsewhere = [host for host in hosts if not ipaddress.ip_address(host).is_loopback]
        assert elsewhere == [], f"connections or lookups beyond loopback: {elsewhere}"
        return {address[1] for address in self.connects}


def run_script(script: str, tmp_path: Path, *, prelude: str = PRELUDE) -> Run:
    """Run ``script`` in a fresh interpreter of a user with no server configured."""
    env = {k: v for k, v in os.environ.items() if k != "H2O_CHAT_URL"}
    env["REPORT"] = str(tmp_path / "report.json")
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the server's database lives, and is deleted
    (tmp_path / "tmp").mkdir()
    source = prelude + textwrap.dedent(script)
    result = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    return Run(
        result,
        report["connects"],
        report["lookups"],
        report["sockets"],
        [tuple(entry) for entry in report["log"]],
    )


# The ports one built-in server is reached at: its own, and its in-process engine's HTTP
# listener (loopback, locked with a key), which it calls for tokenizing.
ONE_SERVER_PORTS = 2


def test_the_seeds_example_answers_locally_with_nothing_configured(tmp_path: Path) -> None:
    run = run_script(
        """
        from h2o_chat.provider import _create_completion

        messages = [{"role": "user", "content": "Hello, how are you?"}]
        for token in _create_completion(model='falcon-7b', messages=messages, stream=True):
            print(token, end='')
        """,
        tmp_path,
    )
    assert run.result.returncode == 0, run.result.stderr
    assert run.result.stdout.strip()  # an answer, and nothing else: the log prints nothing
    assert run.result.stderr == ""  # nor at exit, when the server stops
    assert len(run.loopback_ports()) == ONE_SERVER_PORTS
    assert len(run.started()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []  # its database went with it


def test_two_threads_first_calls_start_one_server(tmp_path: Path) -> None:
    run = run_script(
        f"""
        import threading

        from h2o_chat.provider import _create_completion

        start = threading.Barrier(2)
        answers = []


        def ask():
            start.wait()
            answers.append(list(_create_completion("falcon-7b", {JAPAN!r}, False, do_sample=False)))


        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps(answers))
        """,
        tmp_path,
    )
    assert run.result.returncode == 0, run.result.stderr
    answers = json.loads(run.result.stdout)
    assert len(answers) == 2
    for answer in answers:
        assert len(answer) == 1 and answer[0].strip()  # the whole answer, once
    assert len(run.started()) == 1
    serving = [m for _, _, m in run.log if m.startswith("serving SmolLM2-135M-Instruct")]
    assert len(serving) == 1
    assert len(run.loopback_ports()) == ONE_SERVER_PORTS


def test_an_abandoned_stream_lets_the_next_call_through_at_once(tmp_path: Path) -> None:
    run = run_script(
        f"""
        import gc

        import httpx

        from h2o_chat.provider import _create_completion

        # A long answer (greedy counting without a repetition penalty), dropped after a token.
        numbers = "List the numbers from 1 to 1000, separated by commas."
        count = [{{"role": "user", "content": numbers}}]
        for token in _create_completion(
            "falcon-7b", count, True, do_sample=False, repetition_penalty=1.0, max_new_tokens=2500
        ):
            break
        responses = [o for o in gc.get_objects() if isinstance(o, httpx.Response)]
        still_open = [response for response in responses if not response.is_closed]
        answer = "".join(_create_completion("falcon-7b", {JAPAN!r}, True, do_sample=False))
        print(json.dumps({{"first": token, "still_open": len(still_open), "answer": answer}}))
        """,
        tmp_path,
    )
    assert run.result.returncode == 0, run.result.stderr
    out = json.loads(run.result.stdout)
    assert out["first"]
    assert out["still_open"] == 0  # its response, and so its connection, was released
    assert out["answer"].strip()  # the next call was answered
    assert run.result.stderr == ""
    assert len(run.started()) == 1


# Python's own way to make a module unimportable, as on an install without the extra.
WITHOUT_SERVER_EXTRA = """\
for _name in (
    "starlette", "uvicorn", "multipart", "prometheus_client", "xllamacpp"
):
    sys.modules[_name] = None
"""


def test_without_the_server_extra_one_clear_error_before_any_socket(tmp_path: Path) -> None:
    run = run_script(
        """
        import asyncio
        import threading

        import h2o_chat
        from h2o_chat.provider import _create_completion

        messages = [{"role": "user", "content": "Hello, how are you?"}]
        errors = []
        try:
            _create_completion(model='falcon-7b', messages=messages, stream=True)
        except h2o_chat.ServerNotInstalledError as exc:
            errors.append(str(exc))
        try:
            with h2o_chat.local_client():
                pass
        except h2o_chat.ServerNotInstalledError as exc:
            errors.append(str(exc))


        async def main():
            async with h2o_chat.local_async_client():
                pass


        try:
            asyncio.run(main())
        except h2o_chat.ServerNotInstalledError as exc:
            errors.append(str(exc))
        print(json.dumps({"errors": errors, "threads": threading.active_count()}))
        """,
        tmp_path,
        prelude=PRELUDE + WITHOUT_SERVER_EXTRA,
    )
    assert run.result.returncode == 0, run.result.stderr
    out = json.loads(run.result.stdout)
    assert out["threads"] == 1
    assert len(out["errors"]) == 3 and len(set(out["errors"])) == 1
    message = out["errors"][0]
    assert "pip install 'h2o-chat[server]'" in message and "\n" not in message
    assert "H2O_CHAT_URL" in message
    assert (run.connects, run.lookups, run.sockets) == ([], [], 0)
    assert run.started() == []


def test_local_client_serves_the_builtin_model_and_stops_with_the_block() -> None:
    with local_client(max_retries=0) as client:
        url = client.base_url
        models = client.models()
        assert [m.id for m in models] == ["SmolLM2-135M-Instruct"]
        assert set(models[0].aliases) == set(SEED_IDS)
        chat = client.conversation("falcon-7b")
        assert "Tokyo" in chat.send(JAPAN[0]["content"], do_sample=False).text
    assert url.startswith("http://127.0.0.1:")
    with Client(url, max_retries=0) as after, pytest.raises(ConnectError):
        after.models()


def test_local_server_yields_a_url_any_client_can_use() -> None:
    with local_server() as url, Client(url) as client:
        chat = client.conversation("falcon-40b")
        assert "Tokyo" in chat.send(JAPAN[0]["content"], do_sample=False).text
        assert "Paris" in chat.send("And of France?", do_sample=False).text


async def test_local_async_client_answers() -> None:
    async with local_async_client() as client:
        assert isinstance(client, AsyncClient)
        answer = await client.conversation("llama-13b").send(JAPAN[0]["content"], do_sample=False)
        assert "Tokyo" in answer.text
