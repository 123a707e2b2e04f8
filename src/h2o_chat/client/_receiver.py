"""Turning the bytes of one answer stream into typed events and a final :class:`Completion`."""

from __future__ import annotations

import httpx

from h2o_chat import errors
from h2o_chat.client._errors import from_transport
from h2o_chat.protocol.stream import DEFAULT_MAX_LINE_BYTES, Event, StreamParser
from h2o_chat.protocol.types import Completion, ErrorEvent, StreamResponse


class StreamReceiver:
    """Feeds chunks to the parser and keeps the answer's events, for the sync and async clients.

    Pure: the clients hand it the bytes they read. After yielding what :meth:`feed` or
    :meth:`finish` returns, they call :meth:`raise_pending`, which raises what went wrong in
    those bytes (an error event, bad bytes, an early end) with the text received before it.
    """

    __slots__ = ("_closed", "_error", "_parser", "conversation_id", "events")

    def __init__(
        self, conversation_id: str | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self._parser = StreamParser(max_line_bytes)
        self._error: errors.H2oError | None = None
        self._closed = False
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

    def feed(self, chunk: bytes) -> list[StreamResponse]:
        """The good events that ``chunk`` completes; a problem in it waits for raise_pending."""
        try:
            events = self._parser.feed(chunk)
        except errors.MalformedStreamError as exc:
            events, self._error = exc.events, exc
        return self._accept(events)

    def finish(self) -> list[StreamResponse]:
        """End of the body: the last pending event, if any."""
        self._closed = True
        try:
            events = self._parser.close()
        except errors.MalformedStreamError as exc:
            events, self._error = exc.events, exc
        return self._accept(events)

    def raise_pending(self) -> None:
        """Raise the error found in the bytes fed so far, or for an answer that never ended."""
        error = self._error
        if error is None and self._closed and self.final is None:
            error = errors.StreamClosedError("the stream ended before the final event")
        if error is not None:
            error.partial_text = self.text
            raise error

    def transport_error(self, exc: httpx.TransportError) -> errors.TransportError:
        """The error for a connection that broke mid-stream, carrying the text so far."""
        return from_transport(exc, partial_text=self.text)

    def _accept(self, events: list[Event]) -> list[StreamResponse]:
        if ErrorEvent in set(map(type, events)):
            index = next(i for i, e in enumerate(events) if isinstance(e, ErrorEvent))
            event = events[index]
            assert isinstance(event, ErrorEvent)
            self._error = errors.GenerationError(event.error, error_type=event.error_type)
            events = events[:index]
        good: list[StreamResponse] = events  # type: ignore[assignment]  # no ErrorEvent left
        self.events += good
        return good

    def completion(self) -> Completion:
        """The whole answer, once the stream has finished."""
        final = self.final
        assert final is not None and final.generated_text is not None, "the stream is not done"
        reason = final.details.finish_reason if final.details else None
        tokens = [e.token for e in self.events]
        return Completion(final.generated_text, tokens, reason, self.conversation_id)
