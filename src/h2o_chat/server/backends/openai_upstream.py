"""Any OpenAI-compatible server as the engine: vLLM, TGI's Messages API, llama.cpp, Ollama.

Streams ``POST {base_url}/chat/completions``; closing the stream closes the upstream request,
so a cancelled answer stops the upstream too. Upstream failures become TGI error events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    ErrorType,
    Job,
    UpstreamUnavailable,
)
from h2o_chat.server.backends.upstream_http import Connection, redact, upstream_client

logger = logging.getLogger("h2o_chat.server")

DEFAULT_CONTEXT_LENGTH = 4096  # when the upstream's /models does not say
CONTEXT_KEYS = ("max_model_len", "context_length", "context_window")  # vLLM and others
UPSTREAM_TOKEN_ID = 0  # OpenAI-style streams carry text, not token ids


class OpenAIUpstreamBackend:
    """The model ``model`` of the OpenAI-compatible server at ``base_url`` (ending in /v1)."""

    kind = "openai"
    max_top_n_tokens = 0

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        connection: Connection | None = None,
        timeout: float,
        parallel: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.parallel = parallel  # the engine batches concurrent requests
        self.context_length = DEFAULT_CONTEXT_LENGTH
        self.connection = connection or Connection()
        self._client = upstream_client(self.base_url, self.connection, timeout)

    async def start(self) -> None:
        """Learn the context length from ``GET /models`` if the upstream tells it."""
        try:
            response = await self._client.get("/models")
            response.raise_for_status()
            entries = response.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            logger.warning(
                "upstream %s: no model list (%s); context %d assumed",
                self.base_url,
                exc,
                self.context_length,
            )
            return
        entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == self.model), {})
        meta = entry.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        for value in (*(entry.get(k) for k in CONTEXT_KEYS), meta.get("n_ctx_train")):
            if isinstance(value, int) and value > 0:
                self.context_length = value
                break

    async def probe(self) -> bool:
        """Whether the engine answers now: ``GET /models`` comes back 200 (a replica's health)."""
        try:
            response = await self._client.get("/models")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _body(self, job: Job) -> dict[str, Any]:
        request = job.request
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_new_tokens,
            "temperature": 0.0 if request.temperature is None else request.temperature,
        }
        optional = {
            "top_p": request.top_p,
            "seed": request.seed,
            "top_k": request.top_k,  # extensions that vLLM, llama.cpp and Ollama accept
            "repetition_penalty": request.repetition_penalty,
        }
        body.update((key, value) for key, value in optional.items() if value is not None)
        return body

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        finish: str | None = None
        try:
            async with self._client.stream(
                "POST", "/chat/completions", json=self._body(job)
            ) as response:
                if response.status_code != 200:
                    body = redact(
                        (await response.aread()).decode(errors="replace"), self.connection
                    )
                    raise _status_error(response.status_code, body)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    for text, reason in _chunk_pieces(job, data):
                        finish = reason or finish
                        if text:
                            yield BackendToken(UPSTREAM_TOKEN_ID, text)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise UpstreamUnavailable("the upstream model server is unreachable") from exc
        except httpx.TimeoutException as exc:
            raise BackendError("the upstream model server timed out") from exc
        except httpx.HTTPError as exc:
            raise BackendError("the upstream model server is unreachable or cut the stream") from (
                exc
            )
        if finish is None:
            raise BackendError("the upstream stream ended unfinished", "incomplete_generation")
        if finish == "stop":
            yield BackendToken(UPSTREAM_TOKEN_ID, "", eos=True)

    async def aclose(self) -> None:
        await self._client.aclose()


def _status_error(status: int, body: str) -> BackendError:
    message = f"the upstream model server answered {status}: {_upstream_message(body)}"
    if status == 429 or status >= 500:
        return UpstreamUnavailable(message)
    error_type: ErrorType = "validation" if status in (400, 422) else "generation"
    return BackendError(message, error_type)


def _upstream_message(body: str) -> str:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300]
    error = obj.get("error", obj) if isinstance(obj, dict) else obj
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:300]


def _chunk_pieces(job: Job, data: str) -> list[tuple[str, str | None]]:
    """A chunk's ``(text, finish_reason)`` pieces; records the prompt size from ``usage``."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendError("the upstream model server sent a malformed chunk") from exc
    if not isinstance(chunk, dict):
        raise BackendError("the upstream model server sent a malformed chunk")
    if "error" in chunk:
        raise BackendError(f"the upstream model server failed: {_upstream_message(data)}")
    usage = chunk.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        job.prompt_tokens = usage["prompt_tokens"]
    pieces = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        pieces.append((text if isinstance(text, str) else "", choice.get("finish_reason")))
    return pieces
