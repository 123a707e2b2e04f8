"""The server listens while its models load, and says so until they have."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.tgi.backends import GATE_ENV
from tests.tgi.servers import BACKENDS, serve_loading


def _wait_for(url: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 60
    while (response := httpx.get(url, timeout=10)).status_code != status:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)
    return response


def test_health_before_and_after_the_models_load(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    args = ("--model", "echo=synthetic", "--model", f"gated={BACKENDS}:gated")
    with serve_loading(tmp_path, *args, env={GATE_ENV: str(gate)}) as server:
        loading = httpx.get(f"{server.url}/healthz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert loading.json()["loading"] == ["gated"]
        unknown = httpx.post(f"{server.url}/conversation", json={"model": "gated"})
        assert "still loading: gated" in unknown.json()["error"]
        gate.touch()
        ready = _wait_for(f"{server.url}/healthz", 200)
        assert ready.json()["status"] == "ok"
        assert set(ready.json()["models"]) == {"echo", "gated"}
    assert f"h2o-chat serving echo, gated on {server.url}" in server.log()
