"""The server listens while its models load, and says so until they have."""

from __future__ import annotations

import subprocess
import sys
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
    args = (
        "--model",
        "echo=synthetic",
        "--model",
        f"gated={BACKENDS}:gated",
        "--tgi-model",
        "gated",
    )
    with serve_loading(tmp_path, *args, env={GATE_ENV: str(gate)}) as server:
        loading = httpx.get(f"{server.url}/healthz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        assert loading.json()["loading"] == ["gated"]
        unknown = httpx.post(f"{server.url}/conversation", json={"model": "gated"})
        assert "still loading: gated" in unknown.json()["error"]
        unhealthy = {"error": "unhealthy", "error_type": "healthcheck"}
        for path in ("/health", "/models/gated/health"):  # TGI's answer, on the gated model
            response = httpx.get(server.url + path)
            assert (response.status_code, response.json()) == (503, unhealthy)
        assert httpx.get(f"{server.url}/models/echo/health").status_code == 200  # loaded
        not_yet = httpx.post(f"{server.url}/generate", json={"inputs": "hi"})
        assert not_yet.status_code == 503
        assert not_yet.json() == {
            "error": "model 'gated' is still loading",
            "error_type": "overloaded",
        }
        gate.touch()
        ready = _wait_for(f"{server.url}/health", 200)
        assert ready.content == b""
        assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
        assert httpx.post(f"{server.url}/generate", json={"inputs": "hi"}).status_code == 200
    assert f"h2o-chat serving echo, gated on {server.url}" in server.log()


def test_the_tgi_model_must_be_served(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "h2o_chat", "serve", "--model", "echo=synthetic"]
    result = subprocess.run([*argv, "--tgi-model", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "TGI model 'nope' is not served; served: echo" in result.stderr
