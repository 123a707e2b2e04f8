"""TGI generation parameters: their types, the 2023 provider's defaults and one validator for
client and server."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from h2o_chat.errors import InvalidRequestError


class GenerationParameters(TypedDict, total=False):
    """TGI's generation parameters, as keyword arguments of the client's methods.

    Each is checked before anything is sent (see the checks below); ``None`` leaves a
    parameter out of the request, so the server's own default applies.
    """

    temperature: float | None  # > 0
    repetition_penalty: float | None  # > 0
    top_k: int | None  # >= 1
    top_p: float | None  # in (0, 1]
    typical_p: float | None  # in (0, 1]
    max_new_tokens: int | None  # >= 1
    truncate: int | None  # >= 1: keep only the last this many prompt tokens
    best_of: int | None  # >= 1
    seed: int | None  # the sampling seed, in [0, 2**64)
    stop: list[str] | str | None  # up to 4 stop sequences
    do_sample: bool | None
    return_full_text: bool | None
    details: bool | None  # the final event carries finish_reason and token counts
    decoder_input_details: bool | None
    watermark: bool | None


# The 2023 provider's parameters, in its order.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "temperature": 0.4,
    "truncate": 2048,
    "max_new_tokens": 1024,
    "do_sample": True,
    "repetition_penalty": 1.2,
    "return_full_text": False,
}

MAX_STOP_SEQUENCES = 4  # TGI's default max_stop_sequences
MAX_STOP_LENGTH = 1000


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequestError(f"parameter {name!r} must be a finite number, not {value!r}")
    return float(value)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"parameter {name!r} must be an integer, not {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    number = _number(name, value)
    if number <= 0:
        raise InvalidRequestError(f"parameter {name!r} must be > 0, not {value!r}")
    return number


def _open_unit(name: str, value: Any) -> float:
    number = _number(name, value)
    if not 0 < number <= 1:
        raise InvalidRequestError(f"parameter {name!r} must be in (0, 1], not {value!r}")
    return number


def _positive_int(name: str, value: Any) -> int:
    number = _integer(name, value)
    if number < 1:
        raise InvalidRequestError(f"parameter {name!r} must be >= 1, not {value!r}")
    return number


def _seed(name: str, value: Any) -> int:
    number = _integer(name, value)
    if not 0 <= number < 2**64:
        raise InvalidRequestError(f"parameter {name!r} must be in [0, 2**64), not {value!r}")
    return number


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequestError(f"parameter {name!r} must be true or false, not {value!r}")
    return value


def _stop(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise InvalidRequestError(f"parameter {name!r} must be a list of non-empty strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"parameter {name!r} has {len(value)} sequences; at most {MAX_STOP_SEQUENCES}"
        )
    if any(len(s) > MAX_STOP_LENGTH for s in value):
        raise InvalidRequestError(f"parameter {name!r}: a sequence is over {MAX_STOP_LENGTH} chars")
    return list(value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "temperature": _positive,
    "repetition_penalty": _positive,
    "top_k": _positive_int,
    "top_p": _open_unit,
    "typical_p": _open_unit,
    "max_new_tokens": _positive_int,
    "truncate": _positive_int,
    "best_of": _positive_int,
    "seed": _seed,
    "stop": _stop,
    "do_sample": _boolean,
    "return_full_text": _boolean,
    "details": _boolean,
    "decoder_input_details": _boolean,
    "watermark": _boolean,
}

KNOWN_PARAMETERS = frozenset(_CHECKS)


def validate_parameters(
    parameters: Mapping[str, Any], *, names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Check TGI parameters; return them normalised (``stop`` as a list, ``None`` values dropped).

    Raises :class:`InvalidRequestError` naming the first unknown, mistyped or out-of-range
    one, by the name the caller used for it (``names`` maps TGI names to those).
    """
    if not isinstance(parameters, Mapping):
        raise InvalidRequestError("parameters must be an object")
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        check = _CHECKS.get(name)
        if check is None:
            raise InvalidRequestError(
                f"unknown parameter {name!r}; known: {', '.join(sorted(KNOWN_PARAMETERS))}"
            )
        if value is not None:
            checked[name] = check(names.get(name, name) if names else name, value)
    return checked
