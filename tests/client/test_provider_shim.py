"""The 2023 provider's interface, exact, over the client."""

from __future__ import annotations

import uuid

import pytest

import h2o_chat.provider as provider
from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS
from h2o_chat.protocol.prompt import flatten_messages
from tests.support.faultserver import FaultServer

MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]


def test_module_names_are_the_2023_providers() -> None:
    assert provider.url == "https://gpt-gm.h2o.ai"
    assert provider.model == ["falcon-40b", "falcon-7b", "llama-13b"]
    assert provider.models == {
        "falcon-7b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
        "falcon-40b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
        "llama-13b": "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
    }
    assert provider.supports_stream is True and provider.needs_auth is False
    assert (
        provider.params == "h2o_chat.provider supports: (model: str, messages: list, stream: bool)"
    )


def test_stream_yields_text_tokens_and_sends_the_2023_payload(url: str, fault: FaultServer) -> None:
    tokens = list(provider._create_completion("falcon-7b", MESSAGES, True, base_url=url))
    assert tokens == ["Hello", " wide", " world", "!"]
    body = fault.bodies[-1]
    assert body["inputs"] == flatten_messages(MESSAGES)
    # DEFAULT_PARAMETERS is checked against the 2023 provider's literals in tests/protocol.
    assert body["parameters"] == DEFAULT_PARAMETERS
    assert body["stream"] is True
    options = body["options"]
    assert {k: options[k] for k in ("is_retry", "use_cache", "web_search_id")} == {
        "is_retry": False,
        "use_cache": False,
        "web_search_id": "",
    }
    uuid.UUID(options["id"]), uuid.UUID(options["response_id"])
    created = [c for c in fault.conversations.values() if c["messages"] == [body["inputs"]]]
    assert created[-1]["model"] == "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"


def test_kwargs_override_parameters_and_options(
    url: str, fault: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H2O_CHAT_URL", url)
    answer = list(
        provider._create_completion(
            "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
            MESSAGES,
            False,
            temperature=0.7,
            top_k=40,
            stop=["\n"],
            id="abc",
            response_id="def",
        )
    )
    assert answer == ["Hello wide world!"]
    body = fault.bodies[-1]
    assert body["parameters"]["temperature"] == 0.7 and body["parameters"]["top_k"] == 40
    assert body["parameters"]["stop"] == ["\n"]
    assert body["options"]["id"] == "abc" and body["options"]["response_id"] == "def"


def test_bad_arguments_raise_before_the_network(url: str, fault: FaultServer) -> None:
    with pytest.raises(InvalidRequestError):
        provider._create_completion("falcon-7b", [], True, base_url=url)
    with pytest.raises(ValueError, match="temperature"):
        provider._create_completion("falcon-7b", MESSAGES, True, base_url=url, temperature=-1)
    assert fault.requests == []
