"""Options shared by ``ask`` and ``chat``: the model, system prompt and typed ``--param``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import orjson

from h2o_chat.cli._connect import add_url_argument
from h2o_chat.cli._output import CLIError
from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import validate_parameters


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--url``, ``--system`` and ``--param``."""
    parser.add_argument(
        "-m", "--model", help="model id or alias (default: the server's first model)"
    )
    add_url_argument(parser)
    parser.add_argument("-s", "--system", help="system prompt for the conversation")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generation parameter, repeatable: temperature=0.2, max_new_tokens=64, "
        "do_sample=false, stop='[\"\\n\"]' (values are JSON where they parse as JSON)",
    )


def parse_value(text: str) -> Any:
    """``1`` -> 1, ``0.5`` -> 0.5, ``true`` -> True, ``["a"]`` -> ["a"]; anything else as text.

    Text that starts like a JSON list or object must be one: ``["a"`` is a mistake, not a string.
    """
    if text in ("True", "False"):
        return text == "True"
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if text.startswith(("[", "{")):
            raise CLIError(f"bad --param value {text!r}: not valid JSON ({exc})") from exc
        return text


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as typed TGI parameters, validated by the library's own rules."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"bad --param {pair!r}: expected KEY=VALUE, e.g. temperature=0.2")
        params[key.strip()] = parse_value(value.strip())
    try:
        validate_parameters(params)
    except InvalidRequestError as exc:
        raise CLIError(f"bad --param: {exc.message}") from exc
    return params
