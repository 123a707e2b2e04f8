"""The TGI server-sent-event stream: an incremental parser and the matching encoder.

:class:`StreamParser` is fed bytes in chunks of any size and hands back what they hold, in
order, in the manner of h11: the complete events, and, if the bytes went bad, the error as
a value after them. No I/O, so the sync client, the async client, the server's tests and the
benchmarks share it.
"""

from __future__ import annotations

import msgspec

from h2o_chat.errors import MalformedStreamError
from h2o_chat.protocol.types import ErrorEvent, StreamResponse

Event = StreamResponse | ErrorEvent
"""What a stream carries: a token event, or an error the server reported in the stream."""

Parsed = Event | MalformedStreamError
"""What the parser hands back: token events, ended by an error event or the error for bytes
that are not the format."""

DEFAULT_MAX_LINE_BYTES = 1 << 20

_decode_events = msgspec.json.Decoder(list[StreamResponse]).decode
_decode_event = msgspec.json.Decoder(StreamResponse).decode
_decode_error = msgspec.json.Decoder(ErrorEvent).decode
_encode = msgspec.json.Encoder().encode


class StreamParser:
    """Turns the bytes of an event stream into :class:`StreamResponse` / :class:`ErrorEvent`.

    Lines end in LF or CRLF; ``data:`` with or without a space; ``:`` comments and other
    fields are skipped; an event ends at a blank line (or at :meth:`close`). Bytes kept
    waiting for the end of a line or an event are bounded by ``max_line_bytes``, so memory
    stays bounded.

    An :class:`ErrorEvent` ends the stream, as it does in TGI, and so do bytes that are not
    the format (a :class:`MalformedStreamError`, handed back as a value): either comes last
    in what :meth:`feed` returns, after the token events before it, and the parser hands
    back nothing more. So a reader looks at the last item only.
    """

    __slots__ = ("_buffer", "_ended", "max_line_bytes")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = b""  # the bytes of the event not yet ended by a blank line
        self._ended = False

    def feed(self, chunk: bytes) -> list[Parsed]:
        """Consume ``chunk``; return the events it completed, in order."""
        if self._ended:
            return []
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            parsed: list[Parsed] = []
        else:
            parsed = _parse_blocks(buffer[:end])
            buffer = buffer[end + 2 :]
        if parsed and type(parsed[-1]) is not StreamResponse:
            self._ended = True
        elif len(buffer) > self.max_line_bytes:
            parsed.append(MalformedStreamError(f"stream line over {self.max_line_bytes} bytes"))
            self._ended = True
        self._buffer = b"" if self._ended else buffer
        return parsed

    def close(self) -> list[Parsed]:
        """End of stream: the event still pending, if any."""
        return self.feed(b"\n\n") if self._buffer else []


def _parse_blocks(complete: bytes) -> list[Parsed]:
    """The events of whole blocks (events separated by blank lines).

    Fast path: a run of TGI's one-line ``data:`` events becomes one JSON array, decoded and
    type-checked in one call. Anything else (comments, other fields, multi-line or bad
    events, error events) goes event by event, up to the first one that ends the stream.
    """
    if complete[:5] == b"data:":
        joined = complete[5:].replace(b"\n\ndata:", b",")
        if b"\n" not in joined:
            try:
                # A copy, so that the decoder's own list is freed at once: measured faster
                # for the whole client than handing that list on.
                events: list[Parsed] = list(_decode_events(b"[" + joined + b"]"))
            except msgspec.DecodeError:
                pass
            else:
                if len(events) == complete.count(b"\n\ndata:") + 1:
                    return events
    parsed: list[Parsed] = []
    for block in complete.split(b"\n\n"):
        data = [line[5:] for line in block.split(b"\n") if line[:5] == b"data:"]
        if data:
            try:
                event: Parsed = parse_event(b"\n".join(data))
            except MalformedStreamError as exc:
                event = exc
            parsed.append(event)
            if type(event) is not StreamResponse:
                break
    return parsed


def parse_event(data: bytes) -> Event:
    """One event's JSON (the ``data:`` payload) as a typed event; raises
    :class:`MalformedStreamError` for anything else."""
    try:
        return _decode_event(data)
    except msgspec.DecodeError as exc:
        try:
            return _decode_error(data)
        except msgspec.DecodeError:
            raise MalformedStreamError(f"malformed event ({exc}): {data[:200]!r}") from None


def encode(event: Event) -> bytes:
    """The wire form of one event: ``data:`` + compact JSON + a blank line."""
    return b"data:" + _encode(event) + b"\n\n"


KEEP_ALIVE = b":\n\n"
