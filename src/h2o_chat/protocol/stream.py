"""The TGI server-sent-event stream: an incremental parser and the matching encoder.

:class:`StreamParser` is fed bytes in chunks of any size and hands back complete events,
in the manner of h11: no I/O, so the sync client, the async client and the tests share it.
"""

from __future__ import annotations

from typing import Any

import orjson

from h2o_chat.errors import MalformedStreamError
from h2o_chat.protocol.types import Details, ErrorEvent, StreamResponse, Token

Event = StreamResponse | ErrorEvent

DEFAULT_MAX_LINE_BYTES = 1 << 20
_FINISH_REASONS = frozenset({"length", "eos_token", "stop_sequence"})


class StreamParser:
    """Turns the bytes of an event stream into :class:`StreamResponse` / :class:`ErrorEvent`.

    Lines end in LF or CRLF; ``data:`` with or without a space; ``:`` comments and other
    fields are skipped; an event ends at a blank line (or at :meth:`close`). A line longer
    than ``max_line_bytes`` raises :class:`MalformedStreamError`, so memory stays bounded.
    """

    __slots__ = ("_buffer", "_data", "max_line_bytes")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume ``chunk``; return the events it completed, in order."""
        if b"\n" not in chunk:
            self._buffer += chunk
            if len(self._buffer) > self.max_line_bytes:
                raise MalformedStreamError(f"stream line over {self.max_line_bytes} bytes")
            return []
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > self.max_line_bytes:
            raise MalformedStreamError(f"stream line over {self.max_line_bytes} bytes")
        events: list[Event] = []
        data = self._data
        try:
            for line in lines:
                if len(line) > self.max_line_bytes:
                    raise MalformedStreamError(f"stream line over {self.max_line_bytes} bytes")
                if line.startswith(b"data:"):
                    data.append(line[5:])
                elif data and (line == b"" or line == b"\r"):
                    events.append(parse_event(b"\n".join(data)))
                    data.clear()
                # ':' comments and other fields (event:, id:, retry:) carry nothing for us
        except MalformedStreamError as exc:
            exc.events = events
            raise
        return events

    def close(self) -> list[Event]:
        """End of stream: return the event still pending, if any."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events


def parse_event(data: bytes) -> Event:
    """One event's JSON (the ``data:`` payload) as a typed event."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedStreamError(f"event is not JSON: {data[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise MalformedStreamError(f"event is not a JSON object: {data[:200]!r}")
    if "error" in obj:
        error, error_type = obj["error"], obj.get("error_type")
        if not isinstance(error, str) or not (error_type is None or isinstance(error_type, str)):
            raise MalformedStreamError(f"malformed error event: {data[:200]!r}")
        return ErrorEvent(error, error_type)
    try:
        return _stream_response(obj)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedStreamError(f"malformed token event: {data[:200]!r}") from exc


def _stream_response(obj: dict[str, Any]) -> StreamResponse:
    raw = obj["token"]
    token_id, text, logprob = raw["id"], raw["text"], raw.get("logprob")
    special = raw.get("special", False)
    if (
        not isinstance(text, str)
        or not isinstance(token_id, int)
        or not isinstance(special, bool)
        or not (logprob is None or isinstance(logprob, (int, float)))
    ):
        raise TypeError("token fields")
    generated_text = obj.get("generated_text")
    if not (generated_text is None or isinstance(generated_text, str)):
        raise TypeError("generated_text")
    raw_details = obj.get("details")
    details = None
    if raw_details is not None:
        reason, count, seed = (
            raw_details["finish_reason"],
            raw_details["generated_tokens"],
            raw_details.get("seed"),
        )
        if reason not in _FINISH_REASONS or not isinstance(count, int):
            raise ValueError("details")
        if not (seed is None or isinstance(seed, int)):
            raise TypeError("seed")
        details = Details(reason, count, seed)
    return StreamResponse(Token(token_id, text, logprob, special), generated_text, details)


def encode_event(event: StreamResponse) -> bytes:
    """The wire form of one event: ``data:`` + compact JSON + a blank line."""
    token = event.token
    details = event.details
    payload = {
        "token": {
            "id": token.id,
            "text": token.text,
            "logprob": token.logprob,
            "special": token.special,
        },
        "generated_text": event.generated_text,
        "details": None
        if details is None
        else {
            "finish_reason": details.finish_reason,
            "generated_tokens": details.generated_tokens,
            "seed": details.seed,
        },
    }
    return b"data:" + orjson.dumps(payload) + b"\n\n"


def encode_error(error: ErrorEvent) -> bytes:
    """The wire form of an error event."""
    return b"data:" + orjson.dumps(error.to_dict()) + b"\n\n"


KEEP_ALIVE = b":\n\n"
