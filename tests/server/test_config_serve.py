"""``h2o-chat serve --config`` and ``--check-config`` as a user runs them: a file with three
models (the builtin engine, a synthetic one, an upstream), their aliases and defaults, served
by a real server process; the command line's options win; broken files refused in one line."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support.cli import h2o_chat
from tests.support.h2o import client, converse, final, new_conversation
from tests.support.lab import upstream
from tests.support.servers import REPO, RunningServer, free_port, h2o_server

ENV = dict(os.environ)
FILE = """\
[server]
port = {file_port}
db = "from-the-file.sqlite3"
tgi_model = "smol"
queue_size = 4

[models.smol]
source = "builtin"
aliases = ["small", "tiny"]
defaults = {{ max_new_tokens = 5 }}

[models.echo]
source = "synthetic"
aliases = ["parrot"]
defaults = {{ stop = [" three"] }}

[models.up]
source = "{upstream}"
model = "ok"
context_length = 2048
defaults = {{ max_new_tokens = 2 }}
"""


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("config")
    with upstream(directory) as url:
        text = FILE.format(file_port=free_port(), upstream=url)
        (directory / "h2o-chat.toml").write_text(text)
        yield directory


@pytest.fixture(scope="module")
def server(config_dir: Path) -> Iterator[RunningServer]:
    # h2o_server gives --port and --db; --tgi-model overrides the file's too
    args = ("--config", str(config_dir / "h2o-chat.toml"), "--tgi-model", "parrot")
    with h2o_server(config_dir, *args) as server:
        yield server


def test_the_files_models_and_aliases_are_served(server: RunningServer) -> None:
    models = {m["id"]: m for m in httpx.get(server.url + "/api/models").json()}
    assert list(models) == ["smol", "echo", "up"]
    assert [models[i]["aliases"] for i in models] == [["small", "tiny"], ["parrot"], []]
    assert (models["smol"]["backend"], models["up"]["backend"]) == ("builtin", "openai")
    assert models["up"]["context_length"] == 2048
    names = {m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]}
    assert names == {"smol", "echo", "up", "small", "tiny", "parrot"}


def test_an_alias_serves_its_model_with_the_models_defaults(server: RunningServer) -> None:
    body = {"inputs": "What is the capital of Japan?", "parameters": {"details": True}}
    answer = httpx.post(server.url + "/models/tiny/generate", json=body, timeout=120).json()
    assert answer["details"]["generated_tokens"] == 5  # the file's default, not TGI's 20
    body["parameters"] = {"details": True, "max_new_tokens": 3}
    answer = httpx.post(server.url + "/models/small/generate", json=body, timeout=120).json()
    assert answer["details"]["generated_tokens"] == 3  # the request's own wins
    with client(server) as http:
        events = converse(http, new_conversation(http, "parrot"), "one two three four")
    assert final(events).generated_text == "one two three"  # echo's default stop


def test_the_upstream_answers_within_its_default(server: RunningServer) -> None:
    chat = {"model": "up", "messages": [{"role": "user", "content": "hello"}]}
    choice = httpx.post(server.url + "/v1/chat/completions", json=chat, timeout=60).json()
    assert (choice["choices"][0]["message"]["content"], choice["choices"][0]["finish_reason"]) == (
        "a b",
        "length",
    )


def test_the_command_line_overrides_the_file(server: RunningServer, config_dir: Path) -> None:
    # --tgi-model parrot: TGI's root routes serve echo, not the file's smol
    body = {"inputs": "one two three four", "parameters": {"details": True}}
    answer = httpx.post(server.url + "/generate", json=body, timeout=60).json()
    assert (answer["generated_text"], answer["details"]["finish_reason"]) == (
        "one two three",
        "stop_sequence",
    )
    # --port and --db: served where the command line says; the file's database never made
    assert not (config_dir / "from-the-file.sqlite3").exists()


def test_check_config_summarises_a_good_file(config_dir: Path) -> None:
    path = config_dir / "h2o-chat.toml"
    checked = h2o_chat("serve", "--check-config", str(path), "--port", "9999", env=ENV)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout == (
        f"{config_dir / 'h2o-chat.toml'}: ok: 3 models (smol, echo, up), 3 aliases, "
        "on 127.0.0.1:9999\n"
    )
    # a --model of a file model's id replaces it where it stood; others are added
    models = ("--model", "echo=synthetic:3", "--model", "extra=synthetic")
    checked = h2o_chat("serve", "--check-config", str(path), "--port", "9", *models, env=ENV)
    assert (
        checked.stdout
        == f"{path}: ok: 4 models (smol, echo, up, extra), 3 aliases, on 127.0.0.1:9\n"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[server]\nport = 80 80\n",
            "not valid TOML: Expected newline or end of document after a statement "
            "(at line 2, column 11)",
        ),
        (
            "[models.a]\nsource = 'synthetic'\nparalel = 2\n",
            "models.a.paralel: unknown key (did you mean parallel?)",
        ),
        (
            "[models.a]\nsource = 'http://h/v1'\napi_key_env = 'UNSET_KEY_VARIABLE'\n",
            "models.a.api_key_env: environment variable UNSET_KEY_VARIABLE is not set",
        ),
        (
            "[models.a]\nsource = 'https://h/v1'\nca_bundle = 'missing.pem'\n",
            "models.a.ca_bundle: no file at {dir}/missing.pem",
        ),
    ],
)
def test_a_broken_file_is_one_line_and_exit_2(tmp_path: Path, text: str, line: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    for option in ("--check-config", "--config"):  # serve refuses it before starting anything
        result = h2o_chat("serve", option, str(path), env=ENV, timeout=60)
        assert (result.returncode, result.stdout) == (2, "")
        expected = f"h2o-chat serve: error: {path}: {line.format(dir=tmp_path)}\n"
        assert result.stderr == expected


def test_the_readmes_example_is_a_good_file(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Config file") :]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    path = tmp_path / "h2o-chat.toml"
    path.write_text(example.group(1))
    (tmp_path / "certs").mkdir()
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "certs/internal-ca.pem"))
    keys = {"H2O_CHAT_API_KEY": "sk-server", "VLLM_API_KEY": "sk-vllm"}
    checked = h2o_chat("serve", "--check-config", str(path), env={**ENV, **keys})
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout == f"{path}: ok: 3 models (smol, qwen, tgi), 2 aliases, on 0.0.0.0:8000\n"
