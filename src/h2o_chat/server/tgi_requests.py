"""A request to TGI's routes, from its JSON to its answer: ``inputs`` and ``parameters`` checked
into a plan, the answer as TGI's JSON or events, and TGI's error shape.

``inputs`` reaches the model as one user message, rendered with its own chat template. Only
TGI's parameter names are accepted; those h2o-chat cannot honour (``best_of`` above 1,
``watermark``, ``frequency_penalty``, ``grammar``, ``adapter_id``, more ``top_n_tokens`` than
the engine gives) are validation errors naming them, never ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import msgspec

from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import validate_parameters
from h2o_chat.protocol.types import ErrorEvent, StreamResponse, Token
from h2o_chat.server import generation
from h2o_chat.server.backends.base import ChatMessage, Job, Tokenizer
from h2o_chat.server.http import JSONResponse
from h2o_chat.server.runtime import Runtime, ServedModel

STATUS = {"validation": 422, "generation": 424, "overloaded": 429, "incomplete_generation": 500}
NOT_SUPPORTED = ("frequency_penalty", "grammar", "adapter_id")  # TGI v3 parameters
NO_OP_VALUES: dict[str, object] = {"frequency_penalty": 0}
STREAMED_DETAILS = "`decoder_input_details` == true is not supported when streaming tokens"


class TgiError(Exception):
    """An error in TGI's shape, ``{"error": message, "error_type": error_type}``: an answer
    with ``status`` (by default the error type's), or an event inside a stream."""

    def __init__(self, message: str, error_type: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = STATUS.get(error_type, 500) if status is None else status

    def response(self) -> JSONResponse:
        body = {"error": self.message, "error_type": self.error_type}
        return JSONResponse(body, status_code=self.status)

    def event(self) -> bytes:
        return _sse(ErrorEvent(self.message, self.error_type))


class _StreamDetails(msgspec.Struct, gc=False):
    finish_reason: str
    generated_tokens: int
    seed: int | None
    input_length: int  # v3


class _StreamEvent(msgspec.Struct, gc=False):
    """One ``/generate_stream`` event, its fields in TGI v3's order."""

    index: int  # v3: the token's position, from 1
    token: Token
    top_tokens: list[Token] | msgspec.UnsetType = msgspec.UNSET  # v3, when asked
    generated_text: str | None = None
    details: _StreamDetails | None = None


_encode = msgspec.json.Encoder().encode


def _sse(event: _StreamEvent | ErrorEvent) -> bytes:
    return b"data:" + _encode(event) + b"\n\n"


def check_inputs(body: Mapping[str, Any]) -> str:
    inputs = body.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
        raise InvalidRequestError("`inputs` must be a non-empty string")
    return inputs


def check_parameters(body: Mapping[str, Any], served: ServedModel) -> dict[str, Any]:
    """``parameters`` checked and normalised (see the module docstring)."""
    raw = body.get("parameters")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("`parameters` must be an object")
    given = dict(raw)
    top_n = given.pop("top_n_tokens", None)
    for name in NOT_SUPPORTED:
        value = given.pop(name, None)
        if value is not None and value != NO_OP_VALUES.get(name):
            raise InvalidRequestError(f"parameter {name!r} is not supported by h2o-chat")
    checked = validate_parameters(given)
    if checked.pop("watermark", False):
        raise InvalidRequestError("parameter 'watermark' is not supported by h2o-chat")
    if top_n is not None:
        most = served.backend.max_top_n_tokens
        if isinstance(top_n, bool) or not isinstance(top_n, int) or not 0 <= top_n <= most:
            raise InvalidRequestError(
                f"parameter 'top_n_tokens' must be an integer from 0 to {most} for model "
                f"{served.info.id!r} ({served.info.backend}), not {top_n!r}"
            )
        checked["top_n_tokens"] = top_n
    return checked


async def tokens(served: ServedModel, text: str) -> list[dict[str, Any]]:
    """``text`` as ``[{id, text, start, stop}]``; 404 as TGI when the model cannot tokenize."""
    backend = served.backend
    if not isinstance(backend, Tokenizer):
        raise TgiError(
            f"model {served.info.id!r} ({served.info.backend}) has no tokenizer here",
            "no fast tokenizer",
            404,
        )
    spans = await backend.tokenize(text)
    return [{"id": s.id, "text": s.text, "start": s.start, "stop": s.stop} for s in spans]


class TgiCall:
    """One generation request on ``served``, counted in the metrics under ``route``.

    Raises :class:`InvalidRequestError` for a request that cannot be planned.
    """

    def __init__(
        self, runtime: Runtime, served: ServedModel, body: Mapping[str, Any], route: str
    ) -> None:
        self.runtime = runtime
        self.served = served
        self.route = route
        try:
            self.inputs = check_inputs(body)
            self.parameters = check_parameters(body, served)
            self.plan = served.plan(
                [ChatMessage("user", self.inputs)],
                self.parameters,
                defaults=generation.TGI_DEFAULTS,
                prefix=self.inputs if self.parameters.get("return_full_text") else "",
            )
        except InvalidRequestError:
            self._refused()
            raise
        self.job = Job(self.plan.request)

    def _refused(self) -> None:
        """Count a request refused before generation."""
        labels = (self.served.info.id, self.route, "validation")
        self.runtime.metrics.requests.labels(*labels).inc()

    async def _prefill(self) -> list[dict[str, Any]]:
        """The input's tokens for ``decoder_input_details``, from the model's tokenizer; their
        logprobs are not computed (null)."""
        if not (self.plan.details and self.parameters.get("decoder_input_details")):
            return []
        if not isinstance(self.served.backend, Tokenizer):
            self._refused()
            raise InvalidRequestError(
                f"parameter 'decoder_input_details' needs a tokenizer, and model "
                f"{self.served.info.id!r} ({self.served.info.backend}) has none here"
            )
        spans = await tokens(self.served, self.inputs)
        return [{"id": t["id"], "text": t["text"], "logprob": None} for t in spans]

    def _run(
        self, result: generation.GenerationResult
    ) -> AsyncGenerator[StreamResponse | ErrorEvent, None]:
        return self.runtime.generate(self.served, self.job, self.plan, result, route=self.route)

    async def answer(self) -> dict[str, Any]:
        """The whole answer: ``{"generated_text", "details"?}``; errors as :class:`TgiError`."""
        plan, prefill = self.plan, await self._prefill()
        result = generation.GenerationResult(tokens=[] if plan.details else None)
        async with contextlib.aclosing(self._run(result)) as events:
            async for _ in events:
                pass
        if result.error is not None:
            raise TgiError(result.error.error, result.error.error_type or "generation")
        if result.finish_reason is None:
            raise TgiError("the generation was stopped before its end", "incomplete_generation")
        answer: dict[str, Any] = {"generated_text": plan.prefix + result.text}
        if plan.details:
            details: dict[str, Any] = {
                "finish_reason": result.finish_reason,
                "generated_tokens": result.generated_tokens,
                "seed": plan.request.seed,
                "prefill": prefill,
                "tokens": msgspec.to_builtins(result.tokens),
            }
            if plan.request.top_n_tokens:
                details["top_tokens"] = msgspec.to_builtins(result.top_tokens)
            answer["details"] = details
        return answer

    async def events(self) -> AsyncIterator[bytes]:
        """The answer as TGI's events; an error ends the stream with an error event."""
        if self.parameters.get("decoder_input_details"):
            self._refused()
            yield TgiError(STREAMED_DETAILS, "validation").event()
            return
        index, result = 0, generation.GenerationResult()
        async with contextlib.aclosing(self._run(result)) as events:
            async for event in events:
                if isinstance(event, ErrorEvent):
                    yield _sse(event)
                    return
                index += 1
                tops = result.top_tokens[index - 1] if len(result.top_tokens) >= index else None
                details = None
                if event.details is not None:
                    reason, count = event.details.finish_reason, event.details.generated_tokens
                    input_length = self.job.prompt_tokens or 0
                    details = _StreamDetails(reason, count, event.details.seed, input_length)
                top_tokens = msgspec.UNSET if tops is None else tops
                yield _sse(
                    _StreamEvent(index, event.token, top_tokens, event.generated_text, details)
                )
