"""text-generation-inference as the engine, through its own ``POST /generate_stream``.

TGI takes a prompt, not messages, so the conversation is rendered with the source's chat
template (ChatML unless configured), as chat-ui did. Each token comes through as the engine
gave it: id, text, logprob, ``special`` and ``top_tokens``. An ``eos_token`` finish makes the
last token the end token; ``length`` ends on a plain token, or on an end token the engine did
not count (h2o-chat's own TGI routes end so when their engine stopped short), which is not
passed on: the generation layer ends the stream the same way. No stop sequences are sent
(the generation layer applies them, and closing the stream closes the upstream request, as
any cancel does), so TGI's ``stop_sequence`` does not arise.

Errors keep TGI's ``error_type`` (else one from the HTTP status), as TGI's own client reads
them. Before the first token, what another replica may not suffer (no connection, a cut or
silent stream, a 5xx or 429 answer, an ``overloaded`` event) is :class:`UpstreamUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, TypeGuard, get_args

import httpx
import msgspec

from h2o_chat.protocol.types import Token  # TGI's token, as the 2023 protocol has it
from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    ErrorType,
    GenerationRequest,
    Job,
    UpstreamUnavailable,
)
from h2o_chat.server.backends.chat_template import ChatTemplate
from h2o_chat.server.backends.upstream_http import (
    Connection,
    answers,
    data_lines,
    redact,
    upstream_client,
)

logger = logging.getLogger("h2o_chat.server")

DEFAULT_CONTEXT_LENGTH = 4096  # when /info does not say
DEFAULT_MAX_TOP_N_TOKENS = 5  # TGI's --max-top-n-tokens default, which its /info does not give
ERROR_TYPES: dict[str, ErrorType] = {name: name for name in get_args(ErrorType)}
STATUS_ERROR_TYPES: dict[int, ErrorType] = {
    400: "validation",
    422: "validation",
    424: "generation",
    429: "overloaded",
    503: "overloaded",
}
MAX_MESSAGE = 300  # characters of an upstream's error message passed on


class _Details(msgspec.Struct, frozen=True, gc=False):
    finish_reason: str
    generated_tokens: int
    input_length: int | None = None  # v3


class _Event(msgspec.Struct, frozen=True, gc=False):
    """A ``/generate_stream`` event (a token, the last one with ``generated_text``), or an
    error, as an event or as the body of an error answer."""

    token: Token | None = None
    top_tokens: list[Token] | None = None  # v3, when asked
    generated_text: str | None = None
    details: _Details | None = None
    error: str | None = None
    error_type: str | None = None


_decode = msgspec.json.Decoder(_Event).decode


class TGIUpstreamBackend:
    """The model of the TGI server at ``base_url``; ``chat_template`` (Jinja, HF style)
    renders its prompts, ChatML when None."""

    kind = "tgi"

    def __init__(
        self,
        base_url: str,
        *,
        connection: Connection | None = None,
        chat_template: str | None = None,
        timeout: float,
        parallel: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.parallel = parallel  # the engine batches concurrent requests
        self.context_length = DEFAULT_CONTEXT_LENGTH
        self.max_top_n_tokens = DEFAULT_MAX_TOP_N_TOKENS
        self.connection = connection or Connection()
        self.template = ChatTemplate(chat_template)
        self._client = upstream_client(self.base_url, self.connection, timeout)

    async def probe(self) -> bool:
        """Whether the engine answers TGI's ``GET /health`` now (a replica's health)."""
        return await answers(self._client, "/health")

    async def start(self) -> None:
        """Learn the context (``max_total_tokens``) and ``max_top_n_tokens`` (h2o-chat's own
        TGI routes give it) from ``GET /info``, if the upstream answers."""
        try:
            response = await self._client.get("/info")
            response.raise_for_status()
            info = response.json()
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "upstream %s: no /info (%s); context %d assumed",
                self.base_url,
                redact(str(exc), self.connection),
                self.context_length,
            )
            return
        context, top_n = info.get("max_total_tokens"), info.get("max_top_n_tokens")
        if _is_count(context) and context > 0:
            self.context_length = context
        if _is_count(top_n):
            self.max_top_n_tokens = top_n

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        body = {
            "inputs": self.template.render(job.request.messages),
            "parameters": _parameters(job.request),
        }
        count = 0  # tokens passed on; once one is, another replica cannot take the request over
        try:
            async with self._client.stream("POST", "/generate_stream", json=body) as response:
                if response.status_code != 200:
                    raise self._error(_body_event(await response.aread()), response.status_code)
                async for data in data_lines(response):
                    event = _stream_event(data)
                    if event.error is not None or event.token is None:
                        raise self._error(event, started=count > 0)
                    final = event.generated_text is not None
                    details = event.details if final else None
                    if details is not None and details.input_length is not None:
                        job.prompt_tokens = details.input_length
                    eos = details is not None and details.finish_reason == "eos_token"
                    if eos or details is None or details.generated_tokens > count:
                        count += 1  # (else an end token the engine did not count: no token)
                        yield _backend_token(event.token, event.top_tokens, eos)
                    if final:
                        return
        except httpx.HTTPError as exc:
            raise _transport_error(exc, count > 0) from exc
        message = "the upstream TGI server ended the stream unfinished"
        if count == 0:
            raise UpstreamUnavailable(message, "incomplete_generation")
        raise BackendError(message, "incomplete_generation")

    def _error(
        self, event: _Event, status: int | None = None, *, started: bool = False
    ) -> BackendError:
        """An error answer (``status``) or event as ours: TGI's ``error_type`` first, then the
        status's; what another replica may serve, before the first token, as unavailable."""
        message = redact(event.error or "no error message", self.connection)[:MAX_MESSAGE]
        if status is not None:
            message = f"the upstream TGI server answered {status}: {message}"
        error_type = ERROR_TYPES.get(event.error_type or "") or STATUS_ERROR_TYPES.get(
            status or 0, "generation"
        )
        failed_here = status == 429 or (status or 0) >= 500 or error_type == "overloaded"
        if failed_here and not started:
            return UpstreamUnavailable(message, error_type)
        return BackendError(message, error_type)

    async def aclose(self) -> None:
        await self._client.aclose()


def _parameters(request: GenerationRequest) -> dict[str, Any]:
    """TGI's ``parameters`` for ``request``. TGI samples whenever a warper is set, so the
    warpers go only with sampling; ``top_p``/``typical_p`` 1.0, which TGI refuses, are left
    out as the no-ops they are. ``details`` gives the finish reason (and v3's input length)."""
    parameters: dict[str, Any] = {
        "max_new_tokens": request.max_new_tokens,
        "do_sample": request.temperature is not None,
        "details": True,
        "decoder_input_details": False,
    }
    given: dict[str, Any] = {
        "repetition_penalty": request.repetition_penalty,
        "truncate": request.truncate,
        "top_n_tokens": request.top_n_tokens or None,
    }
    if request.temperature is not None:
        given |= {
            "temperature": request.temperature,
            "top_k": request.top_k,
            "top_p": _warper(request.top_p),
            "typical_p": _warper(request.typical_p),
            "seed": request.seed,
        }
    parameters.update((name, value) for name, value in given.items() if value is not None)
    return parameters


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _warper(value: float | None) -> float | None:
    return None if value is None or value >= 1.0 else value


def _backend_token(token: Token, top_tokens: list[Token] | None, eos: bool) -> BackendToken:
    return BackendToken(
        token.id,
        token.text,
        token.logprob,
        eos=eos,
        special=token.special,
        top_tokens=tuple(
            BackendToken(top.id, top.text, top.logprob, special=top.special)
            for top in top_tokens or ()
        ),
    )


def _stream_event(data: bytes) -> _Event:
    """An event of the stream: a token or an error; :class:`BackendError` for anything else."""
    try:
        event = _decode(data)
    except msgspec.DecodeError as exc:
        raise BackendError("the upstream TGI server sent a malformed event") from exc
    if event.token is None and event.error is None:
        raise BackendError("the upstream TGI server sent an event with no token")
    return event


def _body_event(body: bytes) -> _Event:
    """An error answer's body as TGI's ``{"error", "error_type"}``, or its text as the error."""
    try:
        event = _decode(body)
    except msgspec.DecodeError:
        event = _Event()
    if event.error is None:
        return _Event(error=body.decode(errors="replace").strip() or "no error message")
    return event


def _transport_error(exc: httpx.HTTPError, started: bool) -> BackendError:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        message = "the upstream TGI server is unreachable"
    elif isinstance(exc, httpx.TimeoutException):
        message = "the upstream TGI server timed out"
    else:
        message = "the upstream TGI server cut the stream"
    if not started:
        return UpstreamUnavailable(message)
    return BackendError(message, "incomplete_generation")
