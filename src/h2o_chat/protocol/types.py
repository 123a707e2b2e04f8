"""Typed events of the TGI stream, as chat-ui passed them through, and results.

They are :mod:`msgspec` structs: the stream parser decodes wire JSON straight into them,
with their types checked in C, and the encoder writes them back in TGI's field order.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

FinishReason = Literal["length", "eos_token", "stop_sequence"]

END_OF_TEXT = "<|endoftext|>"  # the text of the h2oGPT models' end-of-sequence token


class Token(msgspec.Struct, frozen=True, gc=False):
    """One generated token: its id, text, log-probability and whether it is a special token."""

    id: int
    text: str
    logprob: float | None = None
    special: bool = False


class Details(msgspec.Struct, frozen=True, gc=False):
    """Sent on the last event when the request asked for ``details``."""

    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None


class StreamResponse(msgspec.Struct, frozen=True, gc=False):
    """One event: a token; the last one also carries ``generated_text`` (and ``details``)."""

    token: Token
    generated_text: str | None = None
    details: Details | None = None

    @property
    def is_final(self) -> bool:
        return self.generated_text is not None


class ErrorEvent(msgspec.Struct, frozen=True, gc=False):
    """An error the server reported inside the stream (HTTP status 200)."""

    error: str
    error_type: str | None = None


class Completion(msgspec.Struct, frozen=True):
    """A whole answer: its text (special tokens left out), every token, and how it ended."""

    text: str
    tokens: list[Token]
    finish_reason: FinishReason | None = None
    conversation_id: str | None = None


class ModelInfo(msgspec.Struct, frozen=True):
    """A model a server serves (``GET /api/models``)."""

    id: str
    backend: str
    context_length: int
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result
