"""Any OpenAI-compatible server as the engine: vLLM, TGI's Messages API, llama.cpp, Ollama.

Streams ``POST {base_url}/chat/completions``; closing the stream closes the upstream request,
so a cancelled answer stops the upstream too. Upstream failures become TGI error events.

Each request whose answer shows tokens (every route's but ``/v1``'s, which shows text) asks
for ``logprobs`` (and ``top_logprobs``: at least 1, as llama.cpp gives none
for 0 and 20 when it is absent), so each token carries its logprob, its alternatives and, where
the engine sends one (llama.cpp does; OpenAI and vLLM do not), its id; a token without an id
gets :data:`UPSTREAM_TOKEN_ID`, as does the end token, which no engine lists. An engine that
refuses ``logprobs`` (a 400 or 422 that the same request without them does not get) is asked
without them from then on, and gives no top tokens.
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
from h2o_chat.server.backends.upstream_http import (
    Connection,
    answers,
    data_lines,
    redact,
    upstream_client,
)

logger = logging.getLogger("h2o_chat.server")

DEFAULT_CONTEXT_LENGTH = 4096  # when the upstream's /models does not say
CONTEXT_KEYS = ("max_model_len", "context_length", "context_window")  # vLLM and others
UPSTREAM_TOKEN_ID = 0  # for a token whose id the engine did not send
MAX_TOP_N_TOKENS = 20  # OpenAI's cap on top_logprobs


class OpenAIUpstreamBackend:
    """The model ``model`` of the OpenAI-compatible server at ``base_url`` (ending in /v1)."""

    kind = "openai"

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
        self.max_top_n_tokens = MAX_TOP_N_TOKENS  # 0 once the engine refuses logprobs
        self.takes_logprobs: bool | None = None  # None until the engine has shown it
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
        """Whether the engine answers ``GET /models`` now (a replica's health)."""
        return await answers(self._client, "/models")

    def _body(self, job: Job, logprobs: bool) -> dict[str, Any]:
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
        if logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = max(1, request.top_n_tokens)
        return body

    async def _send(self, job: Job) -> httpx.Response:
        """The streaming answer (status 200; the caller closes it), with logprobs unless the
        engine refuses them (see the module docstring); an error for any other answer."""
        request = job.request
        if not (request.token_details or request.top_n_tokens):
            return await self._checked(await self._post(job, False))
        asked = self.takes_logprobs is not False
        response = await self._post(job, asked)
        unknown = self.takes_logprobs is None
        if unknown and response.status_code == 200:
            self.takes_logprobs = True
        elif unknown and response.status_code in (400, 422) and not job.request.top_n_tokens:
            refusal = await self._error_body(response)
            response = await self._post(job, False)
            if response.status_code == 200:
                logger.warning(
                    "upstream %s refuses logprobs (%s); asking without them from now on",
                    self.base_url,
                    _upstream_message(refusal),
                )
                self.takes_logprobs, self.max_top_n_tokens = False, 0
        return await self._checked(response)

    async def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise _status_error(response.status_code, await self._error_body(response))
        return response

    async def _post(self, job: Job, logprobs: bool) -> httpx.Response:
        request = self._client.build_request(
            "POST", "/chat/completions", json=self._body(job, logprobs)
        )
        return await self._client.send(request, stream=True)

    async def _error_body(self, response: httpx.Response) -> str:
        """An error answer's body (closed after), the key scrubbed from it."""
        try:
            return redact((await response.aread()).decode(errors="replace"), self.connection)
        finally:
            await response.aclose()

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        finish: str | None = None
        top_n = job.request.top_n_tokens
        try:
            response = await self._send(job)
            try:
                async for data in data_lines(response):
                    if data == b"[DONE]":
                        break
                    tokens, reason = _chunk_tokens(job, data, top_n)
                    finish = reason or finish
                    for token in tokens:
                        yield token
            finally:
                await response.aclose()
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


def _chunk_tokens(job: Job, data: bytes, top_n: int) -> tuple[list[BackendToken], str | None]:
    """A chunk's tokens and finish reason; records the prompt size from ``usage``.

    With logprobs, each entry of ``logprobs.content`` is a token; the chunk's text goes with
    the last (an engine that holds back a split character sends its tokens together), so the
    answer is the text the engine sent. Without, the chunk's text is one token.
    """
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendError("the upstream model server sent a malformed chunk") from exc
    if not isinstance(chunk, dict):
        raise BackendError("the upstream model server sent a malformed chunk")
    if "error" in chunk:
        raise BackendError(f"the upstream model server failed: {_upstream_message(data.decode())}")
    usage = chunk.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        job.prompt_tokens = usage["prompt_tokens"]
    tokens: list[BackendToken] = []
    finish = None
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        text = text if isinstance(text, str) else ""
        logprobs = choice.get("logprobs") or {}
        entries = [e for e in logprobs.get("content") or () if isinstance(e, dict)]
        if entries:
            texts = [""] * (len(entries) - 1) + [text]
            tokens += [_entry_token(e, t, top_n) for e, t in zip(entries, texts, strict=True)]
        elif text:
            tokens.append(BackendToken(UPSTREAM_TOKEN_ID, text))
        finish = choice.get("finish_reason") or finish
    return tokens, finish


def _entry_token(entry: dict[str, Any], text: str, top_n: int) -> BackendToken:
    """A ``logprobs.content`` entry (or one of its ``top_logprobs``) as a token of ``text``."""
    token_id, logprob = entry.get("id"), entry.get("logprob")
    alternatives = entry.get("top_logprobs") or ()
    return BackendToken(
        token_id if isinstance(token_id, int) else UPSTREAM_TOKEN_ID,
        text,
        float(logprob) if isinstance(logprob, int | float) else None,
        top_tokens=tuple(
            _entry_token(top, str(top.get("token", "")), 0)
            for top in alternatives[:top_n]
            if isinstance(top, dict)
        ),
    )
