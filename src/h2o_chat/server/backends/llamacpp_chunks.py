"""Pure translation between a generation and llama.cpp's OpenAI-style completion stream.

:func:`completion_body` turns a request into the body of a ``/v1/completions`` call (a prompt
of token ids, every sampler set explicitly, since llama.cpp's defaults are not TGI's);
:class:`ChunkReader` turns the chunks that come back into backend tokens; :func:`token_spans`
turns ``/tokenize`` pieces into spans of the input text.
"""

from __future__ import annotations

import bisect
import codecs
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    GenerationRequest,
    TokenSpan,
)

# llama.cpp's seed 0xFFFFFFFF means "pick one at random": a TGI seed never maps to it.
SEED_MODULUS = 0xFFFFFFFF


def completion_body(request: GenerationRequest, prompt: Sequence[int]) -> dict[str, Any]:
    """The streamed completion of ``prompt`` (token ids) that ``request`` asks for.

    Each token comes with its log-probability (``logprobs`` >= 1 also streams the end token);
    ``return_progress`` sends a chunk per prompt batch, so a long prompt can be cancelled
    before its first token.
    """
    body: dict[str, Any] = {
        "prompt": list(prompt),
        "max_tokens": request.max_new_tokens,
        "stream": True,
        "logprobs": max(1, request.top_n_tokens),
        "return_progress": True,
        "cache_prompt": True,
        "temperature": 0.0 if request.temperature is None else request.temperature,
        "top_k": request.top_k or 0,  # 0: off (llama.cpp's default is 40)
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "min_p": 0.0,  # off (llama.cpp's default is 0.05)
        "typical_p": 1.0 if request.typical_p is None else request.typical_p,
        "repeat_penalty": request.repetition_penalty or 1.0,
    }
    if request.seed is not None:
        body["seed"] = request.seed % SEED_MODULUS
    return body


class ChunkReader:
    """Chunks of one completion stream in, :class:`BackendToken` out.

    Every generated token arrives in ``logprobs.content`` with its id, bytes and log-probability.
    Text is decoded from the bytes incrementally, so a character split across tokens comes out
    whole. The model's end token renders as no bytes and is followed by ``finish_reason:
    "stop"`` (no stop strings are given to the engine, so "stop" always means the end token):
    a token without bytes is held back until the next chunk says which it was. If the engine
    did not stream the end token, one is made with ``eos_id``.
    """

    def __init__(self, eos_id: int, top_n_tokens: int = 0) -> None:
        self.eos_id = eos_id
        self.top_n_tokens = top_n_tokens
        self.finish_reason: str | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held: BackendToken | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[BackendToken]:
        """The tokens ``chunk`` completes; :class:`BackendError` for an error chunk."""
        error = chunk.get("error")
        if error is not None:
            raise _engine_error(error)
        tokens: list[BackendToken] = []
        for choice in chunk.get("choices") or ():
            for entry in (choice.get("logprobs") or {}).get("content") or ():
                tokens += self._token(entry)
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason
                tokens += self._end(reason)
        return tokens

    def _token(self, entry: Mapping[str, Any]) -> list[BackendToken]:
        raw = bytes(entry.get("bytes") or ())
        token = BackendToken(
            int(entry["id"]),
            self._decoder.decode(raw),
            entry.get("logprob"),
            top_tokens=self._alternatives(entry),
        )
        released = [self._held] if self._held is not None else []
        self._held = None
        if raw:
            return [*released, token]
        self._held = token
        return released

    def _alternatives(self, entry: Mapping[str, Any]) -> tuple[BackendToken, ...]:
        if not self.top_n_tokens:
            return ()
        return tuple(
            BackendToken(
                int(top["id"]),
                bytes(top.get("bytes") or ()).decode(errors="replace"),
                top.get("logprob"),
            )
            for top in (entry.get("top_logprobs") or ())[: self.top_n_tokens]
        )

    def _end(self, reason: str) -> list[BackendToken]:
        held, self._held = self._held, None
        if reason != "stop":
            return [held] if held is not None else []
        if held is None:
            return [BackendToken(self.eos_id, "", None, eos=True)]
        return [dataclasses.replace(held, text="", eos=True)]


def _engine_error(error: Any) -> BackendError:
    if not isinstance(error, Mapping):
        return BackendError(f"the engine failed: {str(error)[:300]}")
    message = str(error.get("message", "the engine failed"))[:300]
    return BackendError(message, "validation" if error.get("code") == 400 else "generation")


def token_spans(text: str, pieces: Sequence[Mapping[str, Any]]) -> list[TokenSpan]:
    """``/tokenize`` pieces (``{"id", "piece"}``, a piece being text or a list of bytes) as
    spans of ``text`` in characters. A token not found at its place in the text (one the
    tokenizer added, such as a BOS) is an empty span there."""
    data = text.encode()
    starts = []  # the byte offset where each character starts
    offset = 0
    for char in text:
        starts.append(offset)
        offset += len(char.encode())

    def char_at(byte: int) -> int:
        return bisect.bisect_right(starts, byte) - 1 if byte < len(data) else len(text)

    spans = []
    cursor = 0
    for piece in pieces:
        raw = piece["piece"]
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
        start = cursor
        if raw and data.startswith(raw, cursor):
            cursor += len(raw)
        first, last = char_at(start), char_at(cursor)
        if cursor > start and last < len(text) and starts[last] < cursor:
            last += 1  # the token ends inside a character: the span covers it
        spans.append(TokenSpan(int(piece["id"]), text[first:last], first, last))
    return spans
