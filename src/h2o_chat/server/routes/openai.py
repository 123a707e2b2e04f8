"""The OpenAI front door: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Same backends, same queues and the same generation code as the H2o stream; OpenAI's request
fields are mapped onto TGI parameters and checked by the one shared validator.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from h2o_chat.protocol.parameters import validate_parameters
from h2o_chat.protocol.prompt import validate_messages
from h2o_chat.protocol.types import ErrorEvent
from h2o_chat.server import generation
from h2o_chat.server.backends.base import ChatMessage, Job
from h2o_chat.server.http import (
    ApiError,
    EventStreamResponse,
    JSONResponse,
    check_api_key,
    prefixed_model,
    read_json_object,
)
from h2o_chat.server.runtime import Runtime, ServedModel, runtime_of

FINISH_REASONS = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}
ERROR_STATUS = {"overloaded": 503, "validation": 400}
ROUTE = "/v1/chat/completions"


def _authorize(request: Request) -> None:
    check_api_key(request, runtime_of(request).config.api_key)


async def list_models(request: Request) -> Response:
    _authorize(request)
    runtime = runtime_of(request)
    names = [*runtime.models, *runtime.config.aliases]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "h2o-chat"} for n in names]
    return JSONResponse({"object": "list", "data": data})


def _parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling fields as validated TGI parameters (temperature 0: greedy)."""
    temperature = body.get("temperature")
    max_tokens = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    parameters: dict[str, Any] = {
        "top_p": body.get("top_p"),
        "max_new_tokens": body.get(max_tokens),
        "stop": body.get("stop"),
        "seed": body.get("seed"),
        "do_sample": temperature != 0,
    }
    if temperature != 0:
        parameters["temperature"] = temperature
    return validate_parameters(parameters, names={"max_new_tokens": max_tokens})


def _plan(body: Mapping[str, Any], served: ServedModel) -> generation.GenerationPlan:
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n = 1 is supported", code="invalid_value")
    checked = validate_messages(body.get("messages", ()))
    messages = [ChatMessage(m["role"], m["content"]) for m in checked]
    return served.plan(messages, _parameters(body), defaults=generation.OPENAI_DEFAULTS)


def _usage(job: Job, result: generation.GenerationResult) -> dict[str, int]:
    prompt = job.prompt_tokens or 0
    completion = result.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def chat_completions(request: Request) -> Response:
    _authorize(request)
    runtime = runtime_of(request)
    body = await read_json_object(request)
    name = prefixed_model(request) or body.get("model")  # a prefix's model, as TGI: any name
    served = runtime.resolve(name) if isinstance(name, str) else None
    if served is None:
        raise ApiError(404, runtime.unknown_model(name), code="model_not_found")
    plan = _plan(body, served)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false")
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    head = {"id": completion_id, "created": int(time.time()), "model": name}
    if stream:
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        return EventStreamResponse(
            _chunks(runtime, served, plan, head, include_usage),
            keep_alive=runtime.config.keep_alive,
        )
    job, result = Job(plan.request), generation.GenerationResult()
    async with contextlib.aclosing(
        runtime.generate(served, job, plan, result, route=ROUTE)
    ) as events:
        async for _ in events:
            pass
    if result.error is not None:
        error_type = result.error.error_type or "generation"
        status = ERROR_STATUS.get(error_type, 500)
        raise ApiError(status, result.error.error, error_type=error_type)
    message = {"role": "assistant", "content": result.answer}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": FINISH_REASONS.get(result.finish_reason or "", "stop"),
    }
    return JSONResponse(
        {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(job, result)}
    )


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin a stop sequence."""
    for size in range(min(len(text), max((len(s) for s in stops), default=1) - 1), 0, -1):
        if any(stop.startswith(text[-size:]) for stop in stops):
            return size
    return 0


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _chunks(
    runtime: Runtime,
    served: ServedModel,
    plan: generation.GenerationPlan,
    head: dict[str, Any],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Chat-completion chunks; text that may begin a stop sequence is held back."""
    head = {**head, "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    job, result, sent = Job(plan.request), generation.GenerationResult(), 0
    pending = ""  # generated text not sent yet: it may begin a stop sequence
    async with contextlib.aclosing(
        runtime.generate(served, job, plan, result, route=ROUTE)
    ) as events:
        async for event in events:
            if isinstance(event, ErrorEvent):
                error = {"message": event.error, "type": event.error_type, "code": None}
                yield _sse({"error": error})
                return
            if event.is_final:
                text = result.answer[sent:]
                reason = FINISH_REASONS.get(result.finish_reason or "", "stop")
                yield chunk({"content": text} if text else {}, reason)
            elif not event.token.special:  # an engine's special token is not answer text
                pending += event.token.text
                ready = len(pending) - _held_back(pending, plan.stop)
                if ready > 0:
                    yield chunk({"content": pending[:ready]})
                    pending, sent = pending[ready:], sent + ready
    if include_usage:
        yield _sse({**head, "choices": [], "usage": _usage(job, result)})
    yield b"data: [DONE]\n\n"


def routes() -> list[Route]:
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route(ROUTE, chat_completions, methods=["POST"]),
    ]
