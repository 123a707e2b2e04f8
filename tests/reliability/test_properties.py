"""Hypothesis drives the running server's request validation: never a 500, only clear answers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2o_chat.protocol.parameters import KNOWN_PARAMETERS
from h2o_chat.protocol.types import ErrorEvent, StreamResponse
from tests.support.h2o import new_conversation, read_events, session_client
from tests.support.lab import Lab, RecordProperty

EXAMPLES = 200
ERROR_TYPES = {"generation", "overloaded", "validation", "incomplete_generation"}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-5, 10_000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(-2, 3)
    | st.text(max_size=20)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` three times in four, so that valid requests are explored too."""
    return st.one_of(good, good, good, bad)


MODELS = mostly(st.just("echo"), st.sampled_from(["unknown/model", ""]) | ANY_JSON)
STOPS = st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4)
VALID_PARAMETERS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0.01, 2),
    "repetition_penalty": st.floats(0.5, 2),
    "top_k": st.integers(1, 50),
    "top_p": st.floats(0.01, 1),
    "typical_p": st.floats(0.01, 1),
    "max_new_tokens": st.integers(1, 64),
    "truncate": st.integers(1, 9000),
    "best_of": st.integers(1, 2),
    "seed": st.integers(0, 2**64 - 1),
    "stop": STOPS | st.text(min_size=1, max_size=4),
    **dict.fromkeys(
        ("do_sample", "return_full_text", "details", "decoder_input_details", "watermark"),
        st.booleans(),
    ),
}
assert VALID_PARAMETERS.keys() == KNOWN_PARAMETERS
PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        **{name: mostly(valid, SCALARS) for name, valid in VALID_PARAMETERS.items()},
        "bogus": SCALARS,
    },
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "id": mostly(st.uuids().map(str), ANY_JSON),
        "response_id": mostly(st.uuids().map(str), ANY_JSON),
        "is_retry": mostly(st.booleans(), ANY_JSON),
        "web_search_id": mostly(st.text(max_size=8), ANY_JSON),
    },
)
TURN_BODIES = mostly(
    st.fixed_dictionaries(
        {"inputs": mostly(st.text(min_size=1, max_size=40), ANY_JSON)},
        optional={
            "parameters": mostly(PARAMETERS, ANY_JSON),
            "options": mostly(OPTIONS, ANY_JSON),
            "stream": ANY_JSON,
        },
    ),
    ANY_JSON,
)
CREATE_BODIES = mostly(
    st.fixed_dictionaries(
        {"model": MODELS}, optional={"preprompt": mostly(st.text(max_size=20), ANY_JSON)}
    ),
    ANY_JSON,
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": mostly(st.sampled_from(["user", "system", "assistant"]), ANY_JSON),
        "content": mostly(st.text(max_size=30), ANY_JSON),
    }
)
OPENAI_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "max_tokens": st.integers(1, 64),
    "max_completion_tokens": st.integers(1, 64),
    "seed": st.integers(0, 2**32),
    "n": st.just(1),
    "stop": STOPS,
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
}
OPENAI_BODIES = mostly(
    st.fixed_dictionaries(
        {"model": MODELS, "messages": mostly(st.lists(MESSAGE, min_size=1, max_size=3), ANY_JSON)},
        optional={name: mostly(valid, SCALARS) for name, valid in OPENAI_FIELDS.items()},
    ),
    ANY_JSON,
)


@pytest.fixture(scope="module")
def session(test_lab: Lab) -> Iterator[tuple[httpx.Client, str]]:
    with session_client(test_lab.url) as client:
        yield client, new_conversation(client, "echo")


def _post(client: httpx.Client, path: str, body: Any) -> int:
    """POST ``body`` (any JSON, NaN and huge integers included) and check the answer.

    4xx: a JSON body with ``error``; 2xx: an event stream that parses and ends with a final
    or error event, or a JSON body. Returns the status.
    """
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    with client.stream("POST", path, content=content, headers=headers) as response:
        status = response.status_code
        kind = response.headers.get("content-type", "")
        assert status < 500, (body, response.read())
        assert 200 <= status < 300 or 400 <= status < 500, status
        if kind.startswith("text/event-stream") and path.startswith("/conversation/"):
            events = read_events(response)
            assert events, body
            last = events[-1]
            assert all(isinstance(e, StreamResponse) and not e.is_final for e in events[:-1])
            if isinstance(last, ErrorEvent):
                assert last.error_type in ERROR_TYPES, last
            else:
                assert last.is_final
        elif kind.startswith("text/event-stream"):
            text = response.read().decode()
            assert text.rstrip().endswith("data: [DONE]") or '"error"' in text, text[-300:]
        else:
            answer = json.loads(response.read())
            assert status < 400 or "error" in answer, answer
    return status


PROPERTY = settings(max_examples=EXAMPLES, deadline=None)


ROUTES: dict[str, tuple[str, st.SearchStrategy[Any], str]] = {
    "POST /conversation": ("/conversation", CREATE_BODIES, "model and preprompt"),
    "POST /conversation/{id}": (
        "/conversation/{id}",
        TURN_BODIES,
        "inputs, parameters (every TGI name and an unknown one), options and stream",
    ),
    "POST /v1/chat/completions": (
        "/v1/chat/completions",
        OPENAI_BODIES,
        "model, messages, stream and OpenAI's sampling fields",
    ),
}


@pytest.mark.reliability(
    "Arbitrary JSON to {route}",
    section="Property testing",
    did=(
        f"Hypothesis: {EXAMPLES} bodies: any JSON (NaN, huge integers), or objects with the "
        "route's fields, valid three times in four, else of any type"
    ),
    expect=(
        "Only 2xx (a stream that parses and ends with a final or error event, or JSON) or "
        "4xx with a JSON error body; never a 500"
    ),
)
@pytest.mark.parametrize("route", list(ROUTES))
def test_arbitrary_json_never_fails(
    session: tuple[httpx.Client, str], route: str, record_property: RecordProperty
) -> None:
    client, conversation_id = session
    path, bodies, fields = ROUTES[route]
    statuses: Counter[int] = Counter()

    @PROPERTY
    @given(body=bodies)
    def check(body: Any) -> None:
        statuses[_post(client, path.format(id=conversation_id), body)] += 1

    check()
    record_property("fields", fields)
    record_property("statuses", dict(sorted(statuses.items())))
