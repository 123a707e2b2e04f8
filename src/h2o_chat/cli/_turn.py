"""One question and its streamed answer on a server-side conversation, as ``ask`` and ``chat``
show it: tokens to stdout as they arrive, or JSON lines, and Ctrl-C sent as stop-generating."""

from __future__ import annotations

import sys
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from h2o_chat import errors
from h2o_chat.cli._output import json_line, log
from h2o_chat.client import Conversation
from h2o_chat.protocol.types import StreamResponse


@dataclass(slots=True)
class Answer:
    """A complete answer: its final event and its timings."""

    final: StreamResponse
    first_token_s: float | None
    total_s: float

    def result(self, conversation_id: str | None) -> dict[str, Any]:
        """The ``{"type": "result", ...}`` line of ``--json``."""
        final = self.final
        details = final.details
        tokens = details.generated_tokens if details else None
        rate = None
        if tokens and self.first_token_s is not None and self.total_s > self.first_token_s:
            rate = round((tokens - 1) / (self.total_s - self.first_token_s), 2)
        return {
            "type": "result",
            "text": final.generated_text,
            "finish_reason": details.finish_reason if details else None,
            "generated_tokens": tokens,
            "conversation_id": conversation_id,
            "timings": {
                "first_token_s": _round(self.first_token_s),
                "total_s": _round(self.total_s),
                "tokens_per_s": rate,
            },
        }


def _round(seconds: float | None) -> float | None:
    """Seconds to the millisecond."""
    return None if seconds is None else round(seconds, 3)


def token_line(event: StreamResponse) -> dict[str, Any]:
    """The ``{"type": "token", ...}`` line of ``--json``."""
    token = event.token
    return {
        "type": "token",
        "id": token.id,
        "text": token.text,
        "logprob": token.logprob,
        "special": token.special,
    }


def error_line(exc: errors.H2oError) -> dict[str, Any]:
    """The ``{"type": "error", ...}`` line of ``--json`` for an answer that failed."""
    return {
        "type": "error",
        "message": exc.message,
        "error_type": getattr(exc, "error_type", None),
        "partial_text": exc.partial_text,
    }


def run_turn(
    conversation: Conversation,
    text: str,
    params: Mapping[str, Any],
    *,
    json: bool = False,
    stream: bool = True,
    out: TextIO | None = None,
) -> Answer:
    """Send ``text`` and write the answer as it arrives (or whole, without ``stream``).

    Ctrl-C closes the stream, asks the server to stop generating and raises
    KeyboardInterrupt again. An error mid-answer is raised after the text so far is written
    (with ``json``, after an ``{"type": "error", ...}`` line).
    """
    out = out or sys.stdout
    start = time.monotonic()
    first: float | None = None
    final: StreamResponse | None = None
    events = conversation.stream(text, **{"details": True, **params})
    try:
        for event in events:
            if first is None:
                first = time.monotonic() - start
            if event.is_final:
                final = event
            if stream and json:
                json_line(token_line(event), out)
            elif stream and not event.token.special:
                out.write(event.token.text)
                out.flush()
    except KeyboardInterrupt:
        if isinstance(events, Generator):
            events.close()
        _stop(conversation)
        raise
    except errors.H2oError as exc:
        if json:
            json_line(error_line(exc), out)
        elif stream and first is not None:
            out.write("\n")
            out.flush()
        raise
    # the client raises StreamClosedError for a stream that ends without its final event
    assert final is not None
    answer = Answer(final, first, time.monotonic() - start)
    if json:
        json_line(answer.result(conversation.id), out)
    else:
        if not stream:
            out.write(final.generated_text or "")
        out.write("\n")
        out.flush()
    return answer


def _stop(conversation: Conversation) -> None:
    """Ask the server to stop the answer; a failure here is only logged."""
    try:
        conversation.stop()
    except errors.H2oError as exc:
        log.warning("could not stop the generation: %s", exc.message)
