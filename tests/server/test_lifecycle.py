"""The server process: restart on the same database, clean exit on signals, uvicorn's proxy
headers, usage errors, embedded thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from h2o_chat.server.backends.sources import SyntheticSource
from h2o_chat.server.config import ModelSpec, ServerConfig
from h2o_chat.server.embedded import embedded_server, start_in_thread
from h2o_chat.server.store.base import SQLiteDatabase
from tests.support.h2o import converse, final, new_conversation
from tests.support.postgres import STORES, db_argument
from tests.support.servers import IMPORTABLE, h2o_server

TRANSCRIPT = ("--model", "transcript=python:tests.support.backends:transcript")


@pytest.mark.parametrize("store", STORES)
def test_conversations_survive_a_restart(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    # a SQLite file's parent directory is created
    db = db_argument(store, request, tmp_path / "state")
    with h2o_server(tmp_path, *TRANSCRIPT, db=db, env=IMPORTABLE) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        http.get("/")
        conversation_id = new_conversation(http, "transcript", preprompt="hi")
        final(converse(http, conversation_id, "first"))
        before = http.get(f"/conversation/{conversation_id}").json()
        assert server.stop() == 0
    with h2o_server(tmp_path, *TRANSCRIPT, db=db, env=IMPORTABLE) as server:
        http = httpx.Client(base_url=server.url, timeout=30, cookies=http.cookies)
        assert http.get(f"/conversation/{conversation_id}").json() == before
        answer = final(converse(http, conversation_id, "second"))
    assert answer.generated_text == (
        "system:hi user:first assistant:system:hi_user:first user:second"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_stream_exits_cleanly(tmp_path: Path, sig: int) -> None:
    args = ("--model", "slow=python:tests.support.backends:slow")
    with h2o_server(tmp_path, *args, env=IMPORTABLE) as server:
        http = httpx.Client(base_url=server.url, timeout=30)
        conversation_id = new_conversation(http, "slow")
        body = {"inputs": "go", "parameters": {"max_new_tokens": 4000}}
        with http.stream("POST", f"/conversation/{conversation_id}", json=body) as response:
            chunks = response.iter_raw()
            assert next(chunks).startswith(b"data:")
            assert server.stop(sig) == 0  # the open stream was cancelled, not waited for
            b"".join(chunks)
    log = server.log()
    assert f"h2o-chat serving slow on {server.url}" in log
    assert "Traceback" not in log


def test_cookie_is_secure_only_over_https(tmp_path: Path) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as behind a local TLS proxy
    with h2o_server(tmp_path, "--model", "echo=synthetic") as server:
        answer = httpx.get(server.url + "/", headers={"x-forwarded-proto": "https"})
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie and "SameSite=None" in cookie and "HttpOnly" in cookie


def test_bad_model_source_is_a_usage_error(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="unknown model source"),
        h2o_server(tmp_path, "--model", "x=ftp://nowhere"),
    ):
        pass


def test_missing_gguf_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with (
        pytest.raises(RuntimeError, match=f"no GGUF file at {missing}"),
        h2o_server(tmp_path, "--model", f"x={missing}"),
    ):
        pass


def test_a_model_that_cannot_load_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "empty.gguf"
    broken.write_bytes(b"")
    argv = [sys.executable, "-m", "h2o_chat", "serve", "--port", "0", "--db"]
    argv += [str(tmp_path / "db.sqlite3"), "--model", "ok=synthetic", "--model", f"x={broken}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)
    assert result.returncode == 1, result.stderr
    assert "Application startup failed" in result.stderr
    assert "SystemExit" not in result.stderr  # uvicorn's exit is absorbed, not re-raised


def test_embedded_server_in_a_thread(tmp_path: Path) -> None:
    config = ServerConfig(
        models=(ModelSpec("echo", SyntheticSource()),),
        port=0,
        db=SQLiteDatabase(tmp_path / "db.sqlite3"),
    )
    with embedded_server(config) as url:
        http = httpx.Client(base_url=url, timeout=30)
        conversation_id = new_conversation(http, "echo")
        assert final(converse(http, conversation_id, "hello")).generated_text == "hello"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")
    url, stop = start_in_thread(config)  # the same database again, another free port
    try:
        assert httpx.get(f"{url}/conversation/{conversation_id}").status_code == 404  # no cookie
    finally:
        stop()
