"""Turning the bytes of one answer stream into typed events and a final :class:`Completion`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

import httpx

from h2o_chat import errors
from h2o_chat.client._errors import from_transport
from h2o_chat.protocol.stream import DEFAULT_MAX_LINE_BYTES, Parsed, StreamParser
from h2o_chat.protocol.types import Completion, ErrorEvent, StreamResponse


class StreamReceiver:
    """Feeds chunks to the parser and keeps the answer's events, for the sync and async clients.

    Pure: the clients hand it the bytes they read and yield what it hands back. What goes
    wrong in the bytes (an error event, bad bytes, an end before the final event) comes out
    in its place: iterating past the good events before it raises it, carrying their text.
    """

    __slots__ = ("_parser", "conversation_id", "events")

    def __init__(
        self, conversation_id: str | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self._parser = StreamParser(max_line_bytes)
        self.events: list[StreamResponse] = []
        self.conversation_id = conversation_id

    @property
    def text(self) -> str:
        """The answer text received so far (special tokens left out)."""
        return "".join([e.token.text for e in self.events if not e.token.special])

    @property
    def final(self) -> StreamResponse | None:
        """The last event, once the answer is complete."""
        if self.events and self.events[-1].generated_text is not None:
            return self.events[-1]
        return None

    def feed(self, chunk: bytes) -> Iterable[StreamResponse]:
        """The events ``chunk`` completes, then the error it holds, if any."""
        return self._deliver(self._parser.feed(chunk), ended=False)

    def finish(self) -> Iterable[StreamResponse]:
        """End of the body: the last pending event, then the error if the answer never ended."""
        return self._deliver(self._parser.close(), ended=True)

    def transport_error(self, exc: httpx.TransportError) -> errors.TransportError:
        """The error for a connection that broke mid-stream, carrying the text so far."""
        return from_transport(exc, partial_text=self.text)

    def completion(self) -> Completion:
        """The whole answer, once the stream has finished."""
        final = self.final
        assert final is not None and final.generated_text is not None, "the stream is not done"
        reason = final.details.finish_reason if final.details else None
        tokens = [e.token for e in self.events]
        return Completion(final.generated_text, tokens, reason, self.conversation_id)

    def _deliver(self, parsed: list[Parsed], *, ended: bool) -> Iterable[StreamResponse]:
        """Keep the token events; the list itself when all is well (the fast path), else a
        generator that yields them and then raises. Only the last item can end the stream."""
        error: errors.H2oError | None = None
        if parsed and type(parsed[-1]) is not StreamResponse:
            end = parsed.pop()
            if isinstance(end, ErrorEvent):
                error = errors.GenerationError(end.error, error_type=end.error_type)
            else:
                assert isinstance(end, errors.MalformedStreamError)
                error = end
        good = cast("list[StreamResponse]", parsed)
        self.events += good
        if error is None and ended and self.final is None:
            error = errors.StreamClosedError("the stream ended before the final event")
        if error is None:
            return good
        error.partial_text = self.text
        return _then_raise(good, error)


def _then_raise(events: list[StreamResponse], error: errors.H2oError) -> Iterator[StreamResponse]:
    yield from events
    raise error
