"""Authenticated upstreams through a config file: llama.cpp's server demanding a bearer key
(served with the key, refused without it or with a wrong one, and the keys nowhere in the
server's DEBUG log, /healthz, /metrics or an answer), extra headers reaching the upstream, and
TLS verified against a CA bundle."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
import trustme

from h2o_chat import weights
from h2o_chat.protocol.stream import Event
from tests.support.echo_upstream import echo_upstream
from tests.support.engines import llama_server
from tests.support.h2o import client, converse, error, final, new_conversation
from tests.support.servers import RunningServer, h2o_server

# Fresh for each run, so that finding one anywhere can only be a leak.
UPSTREAM_KEY = f"sk-upstream-{secrets.token_hex(16)}"
WRONG_KEY = f"sk-wrong-{secrets.token_hex(16)}"
SERVER_KEY = f"sk-server-{secrets.token_hex(16)}"
KEYS = (UPSTREAM_KEY, WRONG_KEY, SERVER_KEY)
ENV = {"UPSTREAM_KEY": UPSTREAM_KEY, "WRONG_KEY": WRONG_KEY, "SERVER_KEY": SERVER_KEY}

FILE = """\
[server]
log_level = "debug"
api_key_env = "SERVER_KEY"

[models.keyed]
source = "{llama}/v1"
model = "smol"
api_key_env = "UPSTREAM_KEY"
defaults = {{ max_new_tokens = 8 }}

[models.keyless]
source = "{llama}/v1"
model = "smol"

[models.wrong]
source = "{llama}/v1"
model = "smol"
api_key_env = "WRONG_KEY"

[models.tls]
source = "{tls}"
ca_bundle = "ca.pem"
headers = {{ X-Team = "chat", X-Trace = "t1" }}

[models.untrusted]
source = "{tls}"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("auth")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    (directory / "llama.key").write_text(UPSTREAM_KEY)
    llama_options = ("--api-key-file", str(directory / "llama.key"))
    with (
        llama_server(weights.ensure(), directory, *llama_options) as llama,
        echo_upstream(directory, ca) as tls,
    ):
        config = directory / "h2o-chat.toml"
        config.write_text(FILE.format(llama=llama.url, tls=tls))
        with h2o_server(directory, "--config", str(config), env=ENV) as server:
            yield server


def _answer_events(server: RunningServer, model: str) -> list[Event]:
    with client(server) as http:
        return list(converse(http, new_conversation(http, model), "What is 2 + 2?"))


def test_the_key_from_its_variable_is_served(server: RunningServer) -> None:
    answer = final(_answer_events(server, "keyed"))
    assert answer.generated_text


@pytest.mark.parametrize("model", ["keyless", "wrong"])
def test_an_upstream_refusing_the_key_is_a_clear_error(server: RunningServer, model: str) -> None:
    with client(server) as http:
        events = converse(http, new_conversation(http, model), "What is 2 + 2?")
    assert error(events).error == "the upstream model server answered 401: Invalid API Key"
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    refused = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers)
    assert "answered 401: Invalid API Key" in refused.text
    assert not any(key in refused.text for key in KEYS)


def test_extra_headers_reach_the_upstream_over_verified_tls(server: RunningServer) -> None:
    answer = final(_answer_events(server, "tls"))
    assert answer.generated_text == "x-team=chat x-trace=t1"


def test_tls_without_the_ca_bundle_is_refused(server: RunningServer) -> None:
    refused = error(_answer_events(server, "untrusted"))
    assert refused.error == "the upstream model server is unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in server.log()  # why, for the operator


def test_no_key_anywhere(server: RunningServer) -> None:
    """After the answers and refusals above: the log, /healthz and /metrics hold no key."""
    _answer_events(server, "keyed")
    _answer_events(server, "wrong")
    health = httpx.get(server.url + "/healthz").text
    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {SERVER_KEY}"})
    assert metrics.status_code == 200
    log = server.log()
    assert "DEBUG" in log  # the most the server logs
    for text in (log, health, metrics.text):
        assert not any(key in text for key in KEYS)
