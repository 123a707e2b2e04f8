"""The 2023 provider's prompt text and request payloads."""

from __future__ import annotations

import pytest

from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol import payloads
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS
from h2o_chat.protocol.prompt import flatten_messages


def test_prompt_is_the_2023_providers_byte_for_byte() -> None:
    messages = [
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": "Tell me a joke."},
    ]
    # The 2023 provider's own loop, as written in the specification.
    conversation = (
        "instruction: this is a conversation beween, a user and an AI assistant, respond to "
        "the latest message, referring to the conversation if needed\n"
    )
    for message in messages:
        conversation += "%s: %s\n" % (message["role"], message["content"])  # noqa: UP031
    conversation += "assistant:"
    assert flatten_messages(messages) == conversation


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([], "empty"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([{"role": "user", "content": 5}], "string"),
        (["hello"], "mapping"),
        ("hello", "list"),
    ],
)
def test_bad_messages(messages: object, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        flatten_messages(messages)  # type: ignore[arg-type]


def test_2023_defaults_and_payload_order() -> None:
    assert DEFAULT_PARAMETERS == {
        "temperature": 0.4,
        "truncate": 2048,
        "max_new_tokens": 1024,
        "do_sample": True,
        "repetition_penalty": 1.2,
        "return_full_text": False,
    }
    options = payloads.new_options()
    body = payloads.completion_body("x", DEFAULT_PARAMETERS, options)
    assert list(body) == ["inputs", "parameters", "stream", "options"]
    assert body["stream"] is True
    assert options["is_retry"] is False and options["use_cache"] is False
    assert options["web_search_id"] == "" and options["id"] != options["response_id"]
