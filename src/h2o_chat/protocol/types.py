"""Typed events of the TGI stream, as chat-ui passed them through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FinishReason = Literal["length", "eos_token", "stop_sequence"]

END_OF_TEXT = "<|endoftext|>"  # the text of the h2oGPT models' end-of-sequence token


@dataclass(slots=True, frozen=True)
class Token:
    """One generated token: its id, text, log-probability and whether it is a special token."""

    id: int
    text: str
    logprob: float | None = None
    special: bool = False


@dataclass(slots=True, frozen=True)
class Details:
    """Sent on the last event when the request asked for ``details``."""

    finish_reason: FinishReason
    generated_tokens: int
    seed: int | None = None


@dataclass(slots=True, frozen=True)
class StreamResponse:
    """One event: a token; the last one also carries ``generated_text`` (and ``details``)."""

    token: Token
    generated_text: str | None = None
    details: Details | None = None

    @property
    def is_final(self) -> bool:
        return self.generated_text is not None


@dataclass(slots=True, frozen=True)
class ErrorEvent:
    """An error the server reported inside the stream (HTTP status 200)."""

    error: str
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "error_type": self.error_type}


@dataclass(slots=True, frozen=True)
class Completion:
    """A whole answer: its text (special tokens left out), every token, and how it ended."""

    text: str
    tokens: list[Token]
    finish_reason: FinishReason | None = None
    conversation_id: str | None = None


@dataclass(slots=True, frozen=True)
class ModelInfo:
    """A model a server serves (``GET /api/models``)."""

    id: str
    backend: str
    context_length: int
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend": self.backend,
            "context_length": self.context_length,
            "aliases": list(self.aliases),
        }
