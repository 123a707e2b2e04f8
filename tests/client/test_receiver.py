"""The receiver: for any chunking, the good events before an error, then the error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2o_chat import errors
from h2o_chat.client._receiver import StreamReceiver
from h2o_chat.protocol.stream import encode
from h2o_chat.protocol.types import ErrorEvent, StreamResponse, Token
from tests.support.chunking import split_at

WORDS = st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=10)


def _receive(pieces: list[bytes]) -> tuple[list[StreamResponse], errors.H2oError | None]:
    """What a client yields, one event at a time as it does, and the error it raises."""
    receiver = StreamReceiver()
    seen: list[StreamResponse] = []
    try:
        for piece in pieces:
            for event in receiver.feed(piece):
                seen.append(event)
        for event in receiver.finish():
            seen.append(event)
    except errors.H2oError as exc:
        return seen, exc
    return seen, None


@settings(max_examples=200, deadline=None)
@given(
    words=WORDS,
    at=st.integers(0, 10),
    bad=st.sampled_from(["error", "malformed", "cut"]),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_good_events_then_the_error_whatever_the_chunking(
    words: list[str], at: int, bad: str, cuts: list[int]
) -> None:
    at = min(at, len(words))
    good = [StreamResponse(Token(i, w, -1.0)) for i, w in enumerate(words[:at])]
    tail = {
        "error": encode(ErrorEvent("boom", "generation")),
        "malformed": b"data:{oops\n\n",
        "cut": b"",
    }[bad]
    data = b"".join(map(encode, good)) + tail
    seen, error = _receive(split_at(data, cuts))
    assert seen == good
    expected = {
        "error": errors.GenerationError,
        "malformed": errors.MalformedStreamError,
        "cut": errors.StreamClosedError,
    }[bad]
    assert error is not None
    assert isinstance(error, expected)
    assert error.partial_text == "".join(words[:at])


def test_completion_from_a_whole_stream() -> None:
    events = [
        StreamResponse(Token(1, "Hi", -0.1)),
        StreamResponse(Token(2, "!", -0.2)),
        StreamResponse(Token(0, "<|endoftext|>", 0.0, True), "Hi!"),
    ]
    receiver = StreamReceiver(conversation_id="c1")
    assert list(receiver.feed(b"".join(map(encode, events)))) == events
    assert list(receiver.finish()) == []
    completion = receiver.completion()
    assert (completion.text, completion.conversation_id) == ("Hi!", "c1")
    assert [t.text for t in completion.tokens] == ["Hi", "!", "<|endoftext|>"]


def test_nothing_is_raised_mid_stream() -> None:
    receiver = StreamReceiver()
    assert list(receiver.feed(encode(StreamResponse(Token(1, "a"))))) == [
        StreamResponse(Token(1, "a"))
    ]
    with pytest.raises(AssertionError):
        receiver.completion()
