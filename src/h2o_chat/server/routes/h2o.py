"""The chat-ui routes of mid-2023: settings, conversations and the TGI event stream."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from h2o_chat.protocol.parameters import validate_parameters
from h2o_chat.protocol.stream import encode
from h2o_chat.protocol.types import ErrorEvent, StreamResponse
from h2o_chat.server import generation
from h2o_chat.server.backends.base import ChatMessage, Described, Job, Replicated
from h2o_chat.server.http import (
    ApiError,
    EventStreamResponse,
    JSONResponse,
    media_type,
    read_json_object,
    session_id,
)
from h2o_chat.server.runtime import Runtime, ServedModel, runtime_of
from h2o_chat.server.store.base import (
    ConversationBusy,
    Message,
    Store,
    StoredConversation,
    StoreUnavailable,
    new_message,
)

logger = logging.getLogger("h2o_chat.server")

CONVERSATION_ID = re.compile(r"[0-9a-f]{24}")
NOT_FOUND = "Conversation not found"
BUSY = (
    "a turn of this conversation is still generating: wait for its answer to end, "
    "or stop it (POST /conversation/{id}/stop-generating)"
)
DATABASE_UNAVAILABLE = "database unavailable"
SETTINGS_BOOLEANS = ("shareConversationsWithModelAuthors", "ethicsModalAccepted")


async def conversation_of(request: Request) -> StoredConversation:
    """The path's conversation if it belongs to this session, else 404."""
    conversation_id = request.path_params["id"]
    conversation = None
    if CONVERSATION_ID.fullmatch(conversation_id):
        store = runtime_of(request).store
        conversation = await store.conversation(session_id(request), conversation_id)
    if conversation is None:
        raise ApiError(404, NOT_FOUND)
    return conversation


async def health(request: Request) -> Response:
    """Each model's queue (generations running, all slots busy, how many wait), for a model
    in this process its engine's settings, and for a replicated model each replica's state
    and load; 503 with ``"status": "loading"`` (and the ids still loading) until every model
    has loaded."""
    runtime = runtime_of(request)
    queues = {
        model_id: {
            "running": served.queue.running,
            "busy": served.queue.busy,
            "waiting": served.queue.waiting,
            **(served.backend.describe() if isinstance(served.backend, Described) else {}),
            **(_replicas(served.backend) if isinstance(served.backend, Replicated) else {}),
        }
        for model_id, served in runtime.models.items()
    }
    if runtime.loading:
        body = {"status": "loading", "models": queues, "loading": runtime.loading}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "models": queues})


def _replicas(backend: Replicated) -> dict[str, list[dict[str, object]]]:
    """Each replica's base URL, state (``up``, or ``down`` while probed) and load."""
    return {
        "replicas": [
            {
                "url": state.url,
                "state": "up" if state.up else "down",
                "in_flight": state.in_flight,
                "requests": state.requests,
            }
            for state in backend.replica_states()
        ]
    }


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
    await runtime.store.save_settings(session_id(request), values)
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
    conversation_id = await runtime.store.create_conversation(
        session_id(request), served.info.id, preprompt
    )
    return JSONResponse({"conversationId": conversation_id})


async def get_conversation(request: Request) -> Response:
    return JSONResponse((await conversation_of(request)).to_dict())


async def delete_conversation(request: Request) -> Response:
    conversation = await conversation_of(request)
    runtime = runtime_of(request)
    await runtime.stop(conversation.id)
    await runtime.store.delete_conversation(session_id(request), conversation.id)
    return JSONResponse({"deleted": True})


async def stop_generating(request: Request) -> Response:
    conversation = await conversation_of(request)
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

    The conversation is claimed for the turn (409 while another turn of it runs, on any
    replica) and the model sees its history as read under the claim, plus ``inputs``. The
    exchange is stored once the answer ends (complete or stopped), before the final event
    goes out, so a failed turn leaves no trace to retry around.
    """
    runtime = runtime_of(request)
    conversation = await conversation_of(request)
    served = runtime.models.get(conversation.model)
    if served is None:
        raise ApiError(410, "Model not available anymore")
    body = await read_json_object(request)
    inputs = _inputs(body)
    message_id, response_id, is_retry = _options(body)
    parameters = body.get("parameters")
    parameters = validate_parameters({} if parameters is None else parameters)
    store = runtime.store
    try:
        claimed = await store.begin_turn(session_id(request), conversation.id)
    except ConversationBusy:
        raise ApiError(409, BUSY) from None
    if claimed is None:  # deleted meanwhile
        raise ApiError(404, NOT_FOUND)
    turn = _Turn(store, claimed.id, new_message("user", inputs, message_id), response_id)
    try:
        history = claimed.messages
        if is_retry and message_id:  # regenerate from that message: drop it and what follows
            index = next((i for i, m in enumerate(history) if m.id == message_id), None)
            if index is not None:
                history, turn.replacing = history[:index], message_id
        messages = [ChatMessage("system", claimed.preprompt)] if claimed.preprompt else []
        messages += [ChatMessage(m.role, m.content) for m in history]
        messages.append(ChatMessage("user", inputs))
        prefix = inputs if parameters.get("return_full_text") else ""
        plan = served.plan(messages, parameters, prefix=prefix)
    except BaseException:
        await turn.end()
        raise
    return _TurnResponse(
        _stream(runtime, served, plan, turn), turn, keep_alive=runtime.config.keep_alive
    )


@dataclass(eq=False)
class _Turn:
    """A claimed turn: its answer saved once with its question, its claim released once."""

    store: Store
    conversation_id: str
    question: Message
    response_id: str | None
    replacing: str | None = None  # a retried message: it and every later one are replaced
    unsaved: str | None = None  # why a finished answer could not be saved
    _kept: bool = False
    _ended: bool = False

    async def keep(self, result: generation.GenerationResult) -> None:
        """Save a complete or stopped answer (a failed one is not kept), once."""
        if self._kept or result.error is not None or not (result.answer or result.finish_reason):
            return
        self._kept = True
        answer = new_message("assistant", result.answer, self.response_id)
        try:
            with anyio.CancelScope(shield=True):
                saved = await self.store.save_turn(
                    self.conversation_id, self.question, answer, replacing=self.replacing
                )
        except StoreUnavailable as exc:
            logger.warning("the answer in %s was not saved: %s", self.conversation_id, exc)
            self.unsaved = DATABASE_UNAVAILABLE
            return
        if not saved:
            self.unsaved = "the conversation was deleted, or another turn took it over"

    async def end(self) -> None:
        """Release the claim, once (one the database cannot release now goes when it can)."""
        if self._ended:
            return
        self._ended = True
        try:
            with anyio.CancelScope(shield=True):
                # after a failed save, do not make the answer wait for a second failure
                defer = self.unsaved == DATABASE_UNAVAILABLE
                await self.store.end_turn(self.conversation_id, defer=defer)
        except StoreUnavailable as exc:
            logger.warning(
                "the turn of %s is released once the database answers: %s",
                self.conversation_id,
                exc,
            )


class _TurnResponse(EventStreamResponse):
    """A turn's event stream, whose claim is released however the response ends, even when
    its stream never started (a client gone before the first byte)."""

    def __init__(self, content: AsyncIterator[bytes], turn: _Turn, *, keep_alive: float) -> None:
        super().__init__(content, keep_alive=keep_alive)
        self.turn = turn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.turn.end()


async def _stream(
    runtime: Runtime, served: ServedModel, plan: generation.GenerationPlan, turn: _Turn
) -> AsyncIterator[bytes]:
    result = generation.GenerationResult()

    async def end() -> None:  # however the generation ends: keep its answer, free the turn
        await turn.keep(result)
        await turn.end()

    events = runtime.generate(
        served,
        Job(plan.request),
        plan,
        result,
        route="/conversation/{id}",
        conversation_id=turn.conversation_id,
        on_end=end,
    )
    final = None
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, StreamResponse) and event.is_final:
                final = event  # sent once the answer is saved and the turn released
            else:
                yield encode(event)
    if final is not None:
        if turn.unsaved is None:
            yield encode(final)
        else:
            yield encode(ErrorEvent(f"the answer was not saved: {turn.unsaved}", "generation"))


def routes() -> list[Route]:
    return [
        Route("/healthz", health, methods=["GET"]),
        Route("/api/models", models, methods=["GET"]),
        Route("/settings", settings, methods=["POST"]),
        Route("/conversation", create_conversation, methods=["POST"]),
        Route("/conversation/{id}", get_conversation, methods=["GET"]),
        Route("/conversation/{id}", converse, methods=["POST"]),
        Route("/conversation/{id}", delete_conversation, methods=["DELETE"]),
        Route("/conversation/{id}/stop-generating", stop_generating, methods=["POST"]),
    ]
