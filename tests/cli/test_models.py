"""``h2o-chat models`` against a real server."""

from __future__ import annotations

import json

from tests.support.cli import h2o_chat
from tests.support.servers import RunningServer


def test_models_table(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("models", "--url", server.url, env=cli_env)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "BACKEND", "CONTEXT", "ALIASES"]
    [row] = rows
    model_id, backend, context, *aliases = row.split()
    assert model_id == "SmolLM2-135M-Instruct"
    assert backend == "builtin"
    assert int(context) > 0
    assert any("falcon-7b" in alias for alias in aliases)


def test_models_json(server: RunningServer, cli_env: dict[str, str]) -> None:
    result = h2o_chat("models", "--url", server.url, "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    [model] = json.loads(result.stdout)
    assert model["id"] == "SmolLM2-135M-Instruct"
    assert set(model) == {"id", "backend", "context_length", "aliases"}
