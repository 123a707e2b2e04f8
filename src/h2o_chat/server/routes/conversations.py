"""The session's conversations as chat-ui's sidebar used them: the list, rename, summarize.

``GET /conversations`` lists them (chat-ui put the same list in its page data), most
recently active first; ``PATCH /conversation/{id}`` renames one; ``POST
/conversation/{id}/summarize`` asks the conversation's model for a title of its first
message, stores it and answers ``{"title": ...}`` (``{}`` when there is none), as chat-ui did.
Like every conversation route they only see the session's own conversations.
"""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from h2o_chat.server import generation
from h2o_chat.server.backends.base import ChatMessage, Job
from h2o_chat.server.http import ApiError, JSONResponse, read_json_object, session_id
from h2o_chat.server.routes.h2o import conversation_of
from h2o_chat.server.runtime import runtime_of

TITLE_MAX_CHARS = 100  # chat-ui's limit on a renamed title
SUMMARY_INPUT_CHARS = 1000  # of the first message: a title needs no more
SUMMARY_PROMPT = (
    "Write a title of at most five words for a conversation that starts with this message:"
    "\n\n{message}\n\nAnswer with the title only."
)
SUMMARY_MAX_NEW_TOKENS = 24
# Greedy, short: the same message gets the same title.
SUMMARY_PARAMETERS = {
    "do_sample": False,
    "max_new_tokens": SUMMARY_MAX_NEW_TOKENS,
    "repetition_penalty": 1.2,
}


def clean_title(text: str) -> str:
    """A title from what a model wrote: its first line, without quotes, Markdown marks, a
    ``Title:`` label or a final period, on one line of at most :data:`TITLE_MAX_CHARS`."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.split()).strip("#*_`\"'\u201c\u201d\u2018\u2019 ")
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip("*_`\"'\u201c\u201d\u2018\u2019 ")
    line = line.removesuffix(".").strip()
    if len(line) > TITLE_MAX_CHARS:  # cut after a whole word
        head = line[:TITLE_MAX_CHARS]
        line = (head.rsplit(" ", 1)[0] if " " in head else head[:-1]).rstrip() + "\u2026"
    return line


async def list_conversations(request: Request) -> Response:
    listing = await runtime_of(request).store.conversations(session_id(request))
    return JSONResponse([conversation.to_dict() for conversation in listing])


async def rename(request: Request) -> Response:
    """chat-ui's ``PATCH``: ``{"title": "..."}``, trimmed, 1 to 100 characters."""
    conversation = await conversation_of(request)
    title = (await read_json_object(request)).get("title")
    if not isinstance(title, str) or not title.strip():
        raise ApiError(400, "'title' must be a non-empty string")
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        raise ApiError(400, f"'title' must be at most {TITLE_MAX_CHARS} characters")
    await runtime_of(request).store.set_title(session_id(request), conversation.id, title)
    return JSONResponse({"title": title})


async def summarize(request: Request) -> Response:
    """A title for the conversation from its model, stored; waits in the model's queue."""
    runtime = runtime_of(request)
    conversation = await conversation_of(request)
    served = runtime.models.get(conversation.model)
    if served is None:
        raise ApiError(410, "Model not available anymore")
    first = next((m.content for m in conversation.messages if m.role == "user"), None)
    if first is None:
        return JSONResponse({})  # nothing to summarize yet
    prompt = SUMMARY_PROMPT.format(message=first[:SUMMARY_INPUT_CHARS])
    plan = served.plan([ChatMessage("user", prompt)], SUMMARY_PARAMETERS)
    result = generation.GenerationResult()
    # Known to stop-generating and DELETE, like an answer of the conversation.
    events = runtime.generate(
        served,
        Job(plan.request),
        plan,
        result,
        route="/conversation/{id}/summarize",
        conversation_id=conversation.id,
    )
    async with contextlib.aclosing(events):
        async for _ in events:
            pass
    if result.error is not None:
        status = 503 if result.error.error_type == "overloaded" else 500
        raise ApiError(status, f"no title: {result.error.error}")
    title = clean_title(result.answer) if result.finish_reason is not None else ""
    if not title or not await runtime.store.set_title(session_id(request), conversation.id, title):
        return JSONResponse({})
    return JSONResponse({"title": title})


def routes() -> list[Route]:
    return [
        Route("/conversations", list_conversations, methods=["GET"]),
        Route("/conversation/{id}", rename, methods=["PATCH"]),
        Route("/conversation/{id}/summarize", summarize, methods=["POST"]),
    ]
