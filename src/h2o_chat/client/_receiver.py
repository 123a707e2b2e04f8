"""Turning the bytes of one answer stream into typed events and a final :class:`Completion`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

from h2o_chat import errors
from h2o_chat.protocol.stream import DEFAULT_MAX_LINE_BYTES, StreamParser
from h2o_chat.protocol.types import Completion, ErrorEvent, StreamResponse, Token


class StreamReceiver:
    """Feeds chunks to the parser, keeps the answer so far and raises errors that carry it.

    Pure: the sync and async clients hand it the bytes they read.
    """

    __slots__ = ("_parser", "_parts", "conversation_id", "final", "tokens")

    def __init__(
        self, conversation_id: str | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self._parser = StreamParser(max_line_bytes)
        self._parts: list[str] = []
        self.tokens: list[Token] = []
        self.final: StreamResponse | None = None
        self.conversation_id = conversation_id

    @property
    def text(self) -> str:
        """The answer text received so far (special tokens left out)."""
        return "".join(self._parts)

    def feed(self, chunk: bytes) -> Iterator[StreamResponse]:
        """Yield the events that ``chunk`` completes, then raise for what went wrong in it.

        An error event raises :class:`GenerationError`, bad bytes :class:`MalformedStreamError`;
        either way after the good events before it, and carrying the text so far.
        """
        return self._parsed(self._parser.feed, chunk)

    def finish(self) -> Iterator[StreamResponse]:
        """End of the body: yield the last pending event; raise if the answer never completed."""
        yield from self._parsed(lambda _: self._parser.close(), b"")
        if self.final is None:
            raise errors.StreamClosedError(
                "the stream ended before the final event", partial_text=self.text
            )

    def transport_error(self, exc: httpx.TransportError) -> errors.TransportError:
        """The error for a connection that broke mid-stream, carrying the text so far."""
        return errors.from_transport(exc, partial_text=self.text)

    def _parsed(
        self, parse: Callable[[bytes], list[StreamResponse | ErrorEvent]], chunk: bytes
    ) -> Iterator[StreamResponse]:
        try:
            events = parse(chunk)
        except errors.MalformedStreamError as exc:
            yield from self._accept(exc.events)
            exc.partial_text = self.text
            raise
        yield from self._accept(events)

    def _accept(self, events: list[StreamResponse | ErrorEvent]) -> Iterator[StreamResponse]:
        for event in events:
            if isinstance(event, ErrorEvent):
                raise errors.GenerationError(
                    event.error, error_type=event.error_type, partial_text=self.text
                )
            token = event.token
            self.tokens.append(token)
            if not token.special:
                self._parts.append(token.text)
            if event.generated_text is not None:
                self.final = event
            yield event

    def completion(self) -> Completion:
        """The whole answer, once :meth:`finish` has returned."""
        final = self.final
        assert final is not None, "completion() before the stream finished"
        text = self.text if final.generated_text is None else final.generated_text
        reason = final.details.finish_reason if final.details else None
        return Completion(text, self.tokens, reason, self.conversation_id)
