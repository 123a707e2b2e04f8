"""The chat-ui routes of mid-2023: settings, conversations and the TGI event stream."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from h2o_chat.protocol.parameters import validate_parameters
from h2o_chat.protocol.stream import encode_error, encode_event
from h2o_chat.protocol.types import ErrorEvent
from h2o_chat.server import generation
from h2o_chat.server.backends.base import ChatMessage, Described, Job
from h2o_chat.server.http import (
    ApiError,
    EventStreamResponse,
    JSONResponse,
    media_type,
    read_json_object,
    session_id,
)
from h2o_chat.server.runtime import Runtime, ServedModel, runtime_of
from h2o_chat.server.storage import Message, StoredConversation, new_message

CONVERSATION_ID = re.compile(r"[0-9a-f]{24}")
NOT_FOUND = "Conversation not found"
SETTINGS_BOOLEANS = ("shareConversationsWithModelAuthors", "ethicsModalAccepted")


def _conversation(request: Request) -> StoredConversation:
    """The path's conversation if it belongs to this session, else 404."""
    conversation_id = request.path_params["id"]
    conversation = None
    if CONVERSATION_ID.fullmatch(conversation_id):
        storage = runtime_of(request).storage
        conversation = storage.conversation(session_id(request), conversation_id)
    if conversation is None:
        raise ApiError(404, NOT_FOUND)
    return conversation


async def index(request: Request) -> Response:
    page: str = request.app.state.index_html
    return HTMLResponse(page)


async def health(request: Request) -> Response:
    """Liveness, and each model's queue: generations running, all slots busy, how many wait;
    for a model in this process, its engine's settings and KV cache use too."""
    queues = {
        model_id: {
            "running": served.queue.running,
            "busy": served.queue.busy,
            "waiting": served.queue.waiting,
            **(served.backend.describe() if isinstance(served.backend, Described) else {}),
        }
        for model_id, served in runtime_of(request).models.items()
    }
    return JSONResponse({"status": "ok", "models": queues})


async def models(request: Request) -> Response:
    return JSONResponse([served.info.to_dict() for served in runtime_of(request).models.values()])


async def _form(request: Request) -> dict[str, str]:
    kind = media_type(request)
    body = (await request.body()).decode(errors="replace")
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body, keep_blank_values=True))
    if kind == "text/plain":  # HTML's text/plain form encoding: one name=value a line
        return dict(line.partition("=")[::2] for line in body.splitlines() if line)
    raise ApiError(415, "settings take an application/x-www-form-urlencoded form")


async def settings(request: Request) -> Response:
    """The welcome-modal form: JS-style booleans, a served ``activeModel``; then redirect."""
    runtime = runtime_of(request)
    form = await _form(request)
    values: dict[str, Any] = {name: bool(form.get(name)) for name in SETTINGS_BOOLEANS}
    accepted_at = datetime.now(UTC).isoformat() if values["ethicsModalAccepted"] else None
    values["ethicsModalAcceptedAt"] = accepted_at
    active = form.get("activeModel") or next(iter(runtime.models))
    if runtime.resolve(active) is None:
        raise ApiError(400, f"activeModel: {runtime.unknown_model(active)}")
    values["activeModel"] = active
    runtime.storage.save_settings(session_id(request), values)
    location = request.headers.get("referer") or "/"
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(location, status_code=303)
    return JSONResponse({"type": "redirect", "status": 303, "location": location})


async def create_conversation(request: Request) -> Response:
    runtime = runtime_of(request)
    body = await read_json_object(request)
    name, preprompt = body.get("model"), body.get("preprompt")
    if not isinstance(name, str):
        raise ApiError(400, "'model' must be a string naming a served model")
    served = runtime.resolve(name)
    if served is None:
        raise ApiError(400, runtime.unknown_model(name))
    if preprompt is not None and not isinstance(preprompt, str):
        raise ApiError(400, "'preprompt' must be a string")
    conversation_id = runtime.storage.create_conversation(
        session_id(request), served.info.id, preprompt
    )
    return JSONResponse({"conversationId": conversation_id})


async def get_conversation(request: Request) -> Response:
    return JSONResponse(_conversation(request).to_dict())


async def delete_conversation(request: Request) -> Response:
    conversation = _conversation(request)
    runtime = runtime_of(request)
    await runtime.stop(conversation.id)
    runtime.storage.delete_conversation(session_id(request), conversation.id)
    return JSONResponse({"deleted": True})


async def stop_generating(request: Request) -> Response:
    conversation = _conversation(request)
    return JSONResponse({"stopped": await runtime_of(request).stop(conversation.id)})


def _uuid_option(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return str(uuid.UUID(value))
    except ValueError:
        pass
    raise ApiError(400, f"'options.{name}' must be a uuid string")


def _options(body: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """``options``: (message id, response id, is_retry); extra keys are ignored."""
    options = body.get("options")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ApiError(400, "'options' must be an object")
    is_retry = options.get("is_retry", False)
    if not isinstance(is_retry, bool):
        raise ApiError(400, "'options.is_retry' must be true or false")
    if not isinstance(options.get("web_search_id", ""), str):
        raise ApiError(400, "'options.web_search_id' must be a string")
    return _uuid_option(options, "id"), _uuid_option(options, "response_id"), is_retry


def _inputs(body: Mapping[str, Any]) -> str:
    inputs = body.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
        raise ApiError(400, "'inputs' must be a non-empty string")
    return inputs.strip()


async def converse(request: Request) -> Response:
    """``POST /conversation/{id}``: stream the answer to ``inputs`` (TGI events).

    The model sees the stored history plus ``inputs``; the exchange is stored once the
    answer ends (complete or stopped), so a failed turn leaves no trace to retry around.
    """
    runtime = runtime_of(request)
    conversation = _conversation(request)
    served = runtime.models.get(conversation.model)
    if served is None:
        raise ApiError(410, "Model not available anymore")
    body = await read_json_object(request)
    inputs = _inputs(body)
    message_id, response_id, is_retry = _options(body)
    parameters = body.get("parameters")
    parameters = validate_parameters({} if parameters is None else parameters)
    history = conversation.messages
    replacing = None
    if is_retry and message_id:  # regenerate from that message: drop it and what follows
        index = next((i for i, m in enumerate(history) if m.id == message_id), None)
        if index is not None:
            history, replacing = history[:index], message_id
    messages = [ChatMessage("system", conversation.preprompt)] if conversation.preprompt else []
    messages += [ChatMessage(m.role, m.content) for m in history]
    messages.append(ChatMessage("user", inputs))
    prefix = inputs if parameters.get("return_full_text") else ""
    plan = generation.plan_generation(
        messages, parameters, served.info.context_length, prefix=prefix
    )
    exchange = _Exchange(
        conversation.id, new_message("user", inputs, message_id), response_id, replacing
    )
    return EventStreamResponse(
        _stream(runtime, served, plan, exchange), keep_alive=runtime.config.keep_alive
    )


@dataclass(frozen=True, slots=True)
class _Exchange:
    """Where the answer of a plan goes: saved with its question once it ends, as chat-ui did."""

    conversation_id: str
    question: Message
    response_id: str | None
    replacing: str | None  # a retried message: it and every later one are replaced


async def _stream(
    runtime: Runtime, served: ServedModel, plan: generation.GenerationPlan, exchange: _Exchange
) -> AsyncIterator[bytes]:
    result = generation.GenerationResult()
    conversation_id = exchange.conversation_id

    def keep_answer() -> None:  # a complete or stopped answer is kept; a failed one is not
        if result.error is None and (result.answer or result.finish_reason):
            answer = new_message("assistant", result.answer, exchange.response_id)
            runtime.storage.save_turn(
                conversation_id, exchange.question, answer, replacing=exchange.replacing
            )

    events = runtime.generate(
        served,
        Job(plan.request),
        plan,
        result,
        conversation_id=conversation_id,
        on_end=keep_answer,
    )
    async with contextlib.aclosing(events):
        async for event in events:
            yield encode_error(event) if isinstance(event, ErrorEvent) else encode_event(event)


def routes() -> list[Route]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/settings", settings, methods=["POST"]),
        Route("/conversation", create_conversation, methods=["POST"]),
        Route("/conversation/{id}", get_conversation, methods=["GET"]),
        Route("/conversation/{id}", converse, methods=["POST"]),
        Route("/conversation/{id}", delete_conversation, methods=["DELETE"]),
        Route("/conversation/{id}/stop-generating", stop_generating, methods=["POST"]),
    ]
