"""The TGI server-sent-event stream: an incremental parser and the matching encoder.

:class:`StreamParser` is fed bytes in chunks of any size and hands back complete events,
in the manner of h11: no I/O, so the sync client, the async client and the tests share it.
"""

from __future__ import annotations

import msgspec

from h2o_chat.errors import MalformedStreamError
from h2o_chat.protocol.types import ErrorEvent, StreamResponse

Event = StreamResponse | ErrorEvent

DEFAULT_MAX_LINE_BYTES = 1 << 20

_decode_events = msgspec.json.Decoder(list[StreamResponse]).decode
_decode_event = msgspec.json.Decoder(StreamResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEvent).decode
_encode = msgspec.json.Encoder().encode


class StreamParser:
    """Turns the bytes of an event stream into :class:`StreamResponse` / :class:`ErrorEvent`.

    Lines end in LF or CRLF; ``data:`` with or without a space; ``:`` comments and other
    fields are skipped; an event ends at a blank line (or at :meth:`close`). Bytes kept
    waiting for the end of a line or an event are bounded by ``max_line_bytes``
    (:class:`MalformedStreamError` beyond it), so memory stays bounded.
    """

    __slots__ = ("_buffer", "max_line_bytes")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = b""  # the bytes of the event not yet ended by a blank line

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume ``chunk``; return the events it completed, in order.

        On bad bytes it raises :class:`MalformedStreamError` whose ``events`` are the
        well-formed events that came before them.
        """
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            events: list[Event] = []
        else:
            events = _parse_blocks(buffer[:end])
            buffer = buffer[end + 2 :]
        self._buffer = buffer
        if len(buffer) > self.max_line_bytes:
            error = MalformedStreamError(f"stream line over {self.max_line_bytes} bytes")
            error.events = events
            raise error
        return events

    def close(self) -> list[Event]:
        """End of stream: return the event still pending, if any."""
        return self.feed(b"\n\n") if self._buffer else []


def _parse_blocks(complete: bytes) -> list[Event]:
    """The events of whole blocks (events separated by blank lines).

    Fast path: a run of TGI's one-line ``data:`` events becomes one JSON array, decoded and
    type-checked in one call. Anything else (comments, other fields, multi-line or bad
    events, error events) goes event by event.
    """
    if complete[:5] == b"data:":
        joined = complete[5:].replace(b"\n\ndata:", b",")
        if b"\n" not in joined:
            try:
                events: list[Event] = list(_decode_events(b"[" + joined + b"]"))
            except msgspec.DecodeError:
                pass
            else:
                if len(events) == complete.count(b"\n\ndata:") + 1:
                    return events
    payloads = []
    for block in complete.split(b"\n\n"):
        data = [line[5:] for line in block.split(b"\n") if line[:5] == b"data:"]
        if data:
            payloads.append(b"\n".join(data))
    events = []
    try:
        for payload in payloads:
            events.append(parse_event(payload))
    except MalformedStreamError as exc:
        exc.events = events
        raise
    return events


def parse_event(data: bytes) -> Event:
    """One event's JSON (the ``data:`` payload) as a typed event."""
    try:
        return _decode_event(data)
    except msgspec.DecodeError as exc:
        try:
            return _decode_error(data)
        except msgspec.DecodeError:
            raise MalformedStreamError(f"malformed event ({exc}): {data[:200]!r}") from None


def encode_event(event: StreamResponse) -> bytes:
    """The wire form of one event: ``data:`` + compact JSON + a blank line."""
    return b"data:" + _encode(event) + b"\n\n"


def encode_error(error: ErrorEvent) -> bytes:
    """The wire form of an error event."""
    return b"data:" + _encode(error) + b"\n\n"


KEEP_ALIVE = b":\n\n"
