"""The shared parameter validator: each check, its bounds, unknown names, and the typed names."""

from __future__ import annotations

from typing import Any

import pytest

from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import (
    KNOWN_PARAMETERS,
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    GenerationParameters,
    validate_parameters,
)

FLAGS = ("do_sample", "return_full_text", "details", "decoder_input_details", "watermark")

# For each check: values it accepts (with what they become) and values it refuses.
ACCEPTED: dict[str, list[tuple[Any, Any]]] = {
    "temperature": [(0.01, 0.01), (2, 2.0), (1e9, 1e9)],
    "repetition_penalty": [(1.2, 1.2), (3, 3.0)],
    "top_k": [(1, 1), (40, 40)],
    "top_p": [(1, 1.0), (0.5, 0.5), (1e-9, 1e-9)],
    "typical_p": [(1.0, 1.0), (0.2, 0.2)],
    "max_new_tokens": [(1, 1), (4096, 4096)],
    "truncate": [(1, 1), (2048, 2048)],
    "best_of": [(1, 1), (2, 2)],
    "seed": [(0, 0), (2**64 - 1, 2**64 - 1)],
    "stop": [("###", ["###"]), (["a", "b"], ["a", "b"]), (["x" * MAX_STOP_LENGTH], None)],
    **{name: [(True, True), (False, False)] for name in FLAGS},
}
REFUSED: dict[str, list[tuple[Any, str]]] = {
    "temperature": [(0, "> 0"), (-1, "> 0"), ("hot", "finite number"), (True, "finite")],
    "repetition_penalty": [(0.0, "> 0"), (float("inf"), "finite"), (float("nan"), "finite")],
    "top_k": [(0, ">= 1"), (1.5, "integer"), (True, "integer")],
    "top_p": [(0, r"\(0, 1\]"), (1.01, r"\(0, 1\]"), ("1", "finite")],
    "typical_p": [(0.0, r"\(0, 1\]"), (2, r"\(0, 1\]")],
    "max_new_tokens": [(0, ">= 1"), (1.5, "integer"), ("64", "integer")],
    "truncate": [(0, ">= 1"), (-3, ">= 1")],
    "best_of": [(0, ">= 1"), (2.0, "integer")],
    "seed": [(-1, r"\[0, 2\*\*64\)"), (2**64, r"\[0, 2\*\*64\)"), (1.0, "integer")],
    "stop": [
        ([1], "non-empty strings"),
        ([""], "non-empty strings"),
        ({"a": 1}, "non-empty strings"),
        (["a"] * (MAX_STOP_SEQUENCES + 1), f"at most {MAX_STOP_SEQUENCES}"),
        (["x" * (MAX_STOP_LENGTH + 1)], f"over {MAX_STOP_LENGTH} chars"),
    ],
    **{name: [("yes", "true or false"), (1, "true or false")] for name in FLAGS},
}


def test_every_known_parameter_is_typed_and_checked() -> None:
    assert GenerationParameters.__annotations__.keys() == KNOWN_PARAMETERS
    assert ACCEPTED.keys() == REFUSED.keys() == KNOWN_PARAMETERS


@pytest.mark.parametrize(
    ("name", "value", "normalised"),
    [(name, value, out) for name, cases in ACCEPTED.items() for value, out in cases],
)
def test_accepted_values(name: str, value: Any, normalised: Any) -> None:
    expected = value if normalised is None else normalised
    assert validate_parameters({name: value}) == {name: expected}


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [(name, value, match) for name, cases in REFUSED.items() for value, match in cases],
)
def test_refused_values_name_the_parameter(name: str, value: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=rf"parameter '{name}'.*{match}"):
        validate_parameters({name: value})


def test_the_caller_s_name_for_a_parameter_is_used() -> None:
    with pytest.raises(InvalidRequestError, match="parameter 'max_tokens' must be >= 1"):
        validate_parameters({"max_new_tokens": 0}, names={"max_new_tokens": "max_tokens"})


@pytest.mark.parametrize("name", ["bogus", "max_tokens", "Temperature", ""])
def test_unknown_names_list_the_known_ones(name: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate_parameters({"temperature": 0.5, name: 1})
    assert caught.value.message.startswith(f"unknown parameter {name!r}; known: best_of, ")
    assert all(known in caught.value.message for known in KNOWN_PARAMETERS)


def test_none_values_are_dropped_and_parameters_must_be_a_mapping() -> None:
    assert validate_parameters(dict.fromkeys(KNOWN_PARAMETERS)) == {}
    with pytest.raises(InvalidRequestError, match="must be an object"):
        validate_parameters([("temperature", 0.5)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "parameters",
    [
        {"temperature": -1},
        {"temperature": 0},
        {"temperature": "hot"},
        {"temperature": True},
        {"max_new_tokens": 0},
        {"max_new_tokens": 1.5},
        {"top_p": 1.5},
        {"top_k": 0},
        {"stop": [1]},
        {"stop": ["a"] * 5},
        {"seed": -1},
        {"do_sample": "yes"},
        {"truncate": 0},
        {"temperature": float("nan")},
        {"unknown": 1},
    ],
)
def test_bad_parameters(parameters: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        validate_parameters(parameters)


def test_good_parameters_are_normalised() -> None:
    checked = validate_parameters({"stop": "###", "top_k": 40, "top_p": None, "seed": 3})
    assert checked == {"stop": ["###"], "top_k": 40, "seed": 3}
