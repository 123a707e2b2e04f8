"""What the clients share, pure: model names, turns; and the requests a chat sends, in-process."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from h2o_chat import errors
from h2o_chat.client._base import ConversationState, model_id
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS
from h2o_chat.protocol.payloads import H2O_2023_MODELS
from tests.support.client import FakeServer


@pytest.mark.parametrize(("short", "full"), sorted(H2O_2023_MODELS.items()))
def test_a_2023_short_name_stands_for_its_h2o_model_id(short: str, full: str) -> None:
    assert model_id(short) == full
    assert model_id(full) == full


@pytest.mark.parametrize("name", ["SmolLM2-135M-Instruct", "falcon-7b ", "Falcon-7B", "a/b"])
def test_any_other_name_is_taken_as_a_model_id(name: str) -> None:
    assert model_id(name) == name


@pytest.mark.parametrize("name", ["", "   ", None, 7, ["falcon-7b"]])
def test_a_model_must_be_a_non_empty_string(name: object) -> None:
    with pytest.raises(errors.UnknownModelError, match="non-empty string"):
        model_id(name)


def test_a_turn_is_the_2023_defaults_overridden_and_checked() -> None:
    state = ConversationState("falcon-40b", system="Be brief.")
    assert (state.model_id, state.system, state.id) == (
        H2O_2023_MODELS["falcon-40b"],
        "Be brief.",
        None,
    )
    turn = state.prepare("Hi", {"id": "abc"}, {"temperature": 0.7, "do_sample": None})
    assert turn.conversation is state and turn.inputs == "Hi"
    expected = {**DEFAULT_PARAMETERS, "temperature": 0.7}
    del expected["do_sample"]  # None leaves it to the server
    assert turn.parameters == expected
    assert turn.options["id"] == "abc" and turn.options["response_id"] != "abc"


@pytest.mark.parametrize(
    ("text", "options", "parameters", "match"),
    [
        ("", None, {}, "non-empty string"),
        ("  \n", None, {}, "non-empty string"),
        (None, None, {}, "non-empty string"),
        ("Hi", {"colour": "red"}, {}, r"unknown options \['colour'\]"),
        ("Hi", None, {"temperature": 0}, "temperature"),
        ("Hi", None, {"bogus": 1}, "unknown parameter 'bogus'"),
    ],
)
def test_a_bad_turn_is_refused(
    text: object, options: dict[str, str] | None, parameters: dict[str, object], match: str
) -> None:
    with pytest.raises(errors.InvalidRequestError, match=match):
        ConversationState("falcon-7b").prepare(text, options, parameters)  # type: ignore[arg-type]


def test_chat_sends_the_model_id_a_short_name_stands_for() -> None:
    fake = FakeServer()
    with fake.client() as client:
        completion = client.chat(
            "llama-13b", [{"role": "user", "content": "Hi"}], max_new_tokens=5, details=True
        )
    assert completion.text == "Hello wide world" and completion.conversation_id == "c1"
    paths = [f"{r.method} {r.url.path}" for r in fake.requests]
    assert paths == ["GET /", "POST /settings", "POST /conversation", "POST /conversation/c1"]
    settings = urllib.parse.parse_qs(fake.requests[1].content.decode())
    assert settings["activeModel"] == [H2O_2023_MODELS["llama-13b"]]
    assert json.loads(fake.requests[2].content) == {"model": H2O_2023_MODELS["llama-13b"]}
    parameters = json.loads(fake.requests[3].content)["parameters"]
    assert parameters["max_new_tokens"] == 5 and parameters["details"] is True
