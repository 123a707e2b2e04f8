"""The stream parser: same events for every chunking; on any bytes, events and then at most
one of the project's errors, as a value."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2o_chat.errors import H2oError, MalformedStreamError
from h2o_chat.protocol.stream import Parsed, StreamParser, encode, parse_event
from h2o_chat.protocol.types import Details, ErrorEvent, StreamResponse, Token
from tests.support.chunking import split_at

TEXTS = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=8)
TOKENS = st.builds(
    Token,
    id=st.integers(0, 2**31),
    text=TEXTS,
    logprob=st.one_of(st.none(), st.floats(-50, 0)),
    special=st.booleans(),
)


def _render(events: list[StreamResponse], *, space: bool, crlf: bool, comments: bool) -> bytes:
    """The events in one of the wire variants the parser must accept."""
    out = []
    for event in events:
        if comments:
            out.append(b":\n\n")
        raw = encode(event)
        if space:
            raw = raw.replace(b"data:", b"data: ", 1)
        out.append(raw)
    body = b"".join(out)
    return body.replace(b"\n", b"\r\n") if crlf else body


def _parse(pieces: list[bytes]) -> list[Parsed]:
    parser = StreamParser()
    parsed: list[Parsed] = []
    for piece in pieces:
        parsed += parser.feed(piece)
    return parsed + parser.close()


def _raise_error(parsed: list[Parsed]) -> None:
    """Raise the error the parser handed back, as the client does; what ends the stream (an
    error event or bad bytes) comes last, and only once."""
    assert all(type(p) is StreamResponse for p in parsed[:-1])
    end = parsed[-1] if parsed else None
    if isinstance(end, MalformedStreamError):
        raise end


@pytest.mark.reliability(
    "Stream parser: any chunking",
    section="Property testing",
    did=(
        "Hypothesis: 300 random token lists rendered with/without space, CRLF, comments, cut at "
        "random points and byte by byte"
    ),
    expect="The same events as the unsplit stream",
)
@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(TOKENS, min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=30),
    space=st.booleans(),
    crlf=st.booleans(),
    comments=st.booleans(),
)
def test_any_chunking_yields_the_same_events(
    tokens: list[Token], cuts: list[int], space: bool, crlf: bool, comments: bool
) -> None:
    text = "".join(t.text for t in tokens)
    events = [StreamResponse(t) for t in tokens[:-1]]
    events.append(StreamResponse(tokens[-1], text, Details("eos_token", len(tokens), 7)))
    data = _render(events, space=space, crlf=crlf, comments=comments)
    assert _parse(split_at(data, cuts)) == events
    assert _parse([bytes([b]) for b in data]) == events  # one byte at a time: split UTF-8 too


@pytest.mark.reliability(
    "Stream parser: arbitrary bytes",
    section="Property testing",
    did="Hypothesis: 500 random byte strings cut at random points",
    expect="Only the project's H2oError, never another exception",
)
@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
def test_arbitrary_bytes_raise_only_project_errors(data: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(H2oError):
        _raise_error(_parse(split_at(data, cuts)))


@pytest.mark.reliability(
    "Stream parser: arbitrary JSON events",
    section="Property testing",
    did="Hypothesis: 300 random JSON values with TGI event keys",
    expect="Only the project's H2oError, never another exception",
)
@settings(max_examples=300, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "token",
                        "id",
                        "text",
                        "special",
                        "logprob",
                        "error",
                        "generated_text",
                        "details",
                        "finish_reason",
                        "generated_tokens",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=10,
    )
)
def test_arbitrary_json_raises_only_project_errors(payload: object) -> None:
    with contextlib.suppress(H2oError):
        parse_event(json.dumps(payload).encode())


def test_error_event_and_keepalive() -> None:
    parser = StreamParser()
    error = ErrorEvent("`inputs` tokens + `max_new_tokens` must be <= 2048", "validation")
    assert parser.feed(b":\n\n" + encode(error)) == [error]


def test_event_without_trailing_blank_line_is_delivered_at_close() -> None:
    parser = StreamParser()
    event = StreamResponse(Token(1, "hi", None, False), "hi")
    assert parser.feed(encode(event).rstrip(b"\n")) == []
    assert parser.close() == [event]


@pytest.mark.reliability(
    "Stream parser: endless line",
    section="Client faults",
    did="Feed a line past max_line_bytes without a newline",
    expect="MalformedStreamError; the buffer never exceeds the limit",
)
def test_line_over_the_limit_is_refused_with_bounded_memory() -> None:
    parser = StreamParser(max_line_bytes=1024)
    assert parser.feed(b"data:" + b"x" * 1000) == []
    with pytest.raises(MalformedStreamError, match="over 1024 bytes"):
        _raise_error(parser.feed(b"x" * 100))


@pytest.mark.parametrize(
    "line",
    [
        b"data:[1,2]",
        b"data:{}",
        b'data:{"token":{"id":"1","text":"a"}}',
        b"data:nope",
        b'data:{"error":5}',
        b'data:{"token":{"id":1,"text":"a"},"details":{"finish_reason":"x"}}',
    ],
)
def test_malformed_events(line: bytes) -> None:
    with pytest.raises(MalformedStreamError):
        _raise_error(StreamParser().feed(line + b"\n\n"))
