"""TGI's own routes, so that TGI's clients and chat-ui itself can use h2o-chat as their engine.

text-generation-inference v0.9's ``POST /generate``, ``/generate_stream`` and ``/`` (the
compatibility route, also ``/invocations``), ``GET /info`` and ``/health``, with v3's cheap
additions (``POST /tokenize``, ``top_n_tokens``, the events' ``index``, ``max_input_tokens``).
The root serves the default model (``--tgi-model``, else the first); every served model is also
a TGI base URL of its own under ``/models/{id}`` (an id or an alias), where
``/v1/chat/completions`` serves it too, whatever model the body names, as TGI does.

Errors are TGI's ``{"error", "error_type"}``: 422 validation, 424 generation, 429 overloaded,
500 incomplete generation; on a streaming route every error after the body was read arrives
as an error event in a 200 stream, as TGI sends it. ``--api-key`` guards every route but
``/health``, which probes call without one.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

import h2o_chat
from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import MAX_STOP_SEQUENCES
from h2o_chat.server.http import (
    MODEL_PREFIX,
    ApiError,
    EventStreamResponse,
    JSONResponse,
    check_api_key,
    prefixed_model,
    read_json_object,
)
from h2o_chat.server.routes import openai
from h2o_chat.server.runtime import ServedModel, runtime_of
from h2o_chat.server.tgi_requests import TgiCall, TgiError, check_inputs, check_parameters, tokens

PREFIX = "/models"  # every served model is a TGI endpoint at /models/{id}
ERROR_TYPES = {401: "authentication", 404: "not_found", 503: "unavailable"}  # else validation
UNHEALTHY = {"error": "unhealthy", "error_type": "healthcheck"}


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(*, private: bool = True) -> Callable[[Handler], Handler]:
    """A TGI handler: the API key checked (unless not ``private``), errors in TGI's shape."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                if private:
                    check_api_key(request, runtime_of(request).config.api_key)
                return await handler(request)
            except TgiError as exc:
                return exc.response()
            except InvalidRequestError as exc:
                return TgiError(str(exc), "validation").response()
            except ApiError as exc:
                error_type = ERROR_TYPES.get(exc.status, "validation")
                return TgiError(exc.message, error_type, exc.status).response()

        return endpoint

    return decorate


def _model_name(request: Request) -> str:
    return prefixed_model(request) or runtime_of(request).config.default_model


def _served(request: Request) -> ServedModel:
    """The model of the request's URL; 503 while it loads."""
    name = _model_name(request)
    served = runtime_of(request).resolve(name)
    if served is None:  # only served names reach here: it is still loading
        raise TgiError(f"model {name!r} is still loading", "overloaded", 503)
    return served


def _call(request: Request, body: Mapping[str, Any], route: str) -> TgiCall:
    return TgiCall(runtime_of(request), _served(request), body, route)


def _stream(request: Request, body: Mapping[str, Any], route: str) -> Response:
    """The event stream for ``body``: an error before generation is its only event."""
    keep_alive = runtime_of(request).config.keep_alive
    try:
        call = _call(request, body, route)
    except InvalidRequestError as exc:
        error = TgiError(str(exc), "validation")
    except TgiError as exc:
        error = exc
    else:
        return EventStreamResponse(call.events(), keep_alive=keep_alive)

    async def only_error() -> AsyncIterator[bytes]:
        yield error.event()

    return EventStreamResponse(only_error(), keep_alive=keep_alive)


@_endpoint()
async def generate(request: Request) -> Response:
    body = await read_json_object(request)
    return JSONResponse(await _call(request, body, "/generate").answer())


@_endpoint()
async def generate_stream(request: Request) -> Response:
    return _stream(request, await read_json_object(request), "/generate_stream")


@_endpoint()
async def compat_generate(request: Request) -> Response:
    """``POST /``: streams when ``stream`` is true, else the one-element array."""
    body = await read_json_object(request)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("`stream` must be true or false")
    if stream:
        return _stream(request, body, "/")
    return JSONResponse([await _call(request, body, "/").answer()])


@_endpoint()
async def tokenize(request: Request) -> Response:
    body = await read_json_object(request)
    served = _served(request)
    truncate = check_parameters(body, served).get("truncate")
    spans = await tokens(served, check_inputs(body))
    return JSONResponse(spans[-truncate:] if truncate else spans)


@_endpoint()
async def info(request: Request) -> Response:
    served = _served(request)
    context, queue = served.info.context_length, served.queue
    return JSONResponse(
        {
            "model_id": served.info.id,
            "model_sha": None,
            "model_dtype": "unknown",
            "model_device_type": "unknown",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": queue.size + queue.parallel,
            "max_best_of": 1,
            "max_stop_sequences": MAX_STOP_SEQUENCES,
            "max_input_length": context - 1,
            "max_input_tokens": context - 1,  # v3's name
            "max_total_tokens": context,
            "waiting_served_ratio": 0.0,
            "max_batch_total_tokens": context * queue.parallel,
            "max_waiting_tokens": 0,
            "max_batch_size": queue.parallel,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": "h2o-chat",
            "version": h2o_chat.__version__,
            "sha": None,
            "docker_label": None,
            # h2o-chat's own
            "backend": served.info.backend,
            "aliases": list(served.info.aliases),
            "max_top_n_tokens": served.backend.max_top_n_tokens,
        }
    )


@_endpoint(private=False)
async def health(request: Request) -> Response:
    """200 once the model has loaded; 503 with TGI's body before."""
    if runtime_of(request).resolve(_model_name(request)) is None:
        return JSONResponse(UNHEALTHY, status_code=503)
    return Response(status_code=200)


class ModelPrefix:
    """``/models/{name}/...``: the routes for the model served as ``name`` (an id or an alias,
    slashes allowed), the longest served name the path begins with; 404 when none."""

    def __init__(self, app: ASGIApp, names: Sequence[str]) -> None:
        self.app = app
        self.names = sorted(names, key=len, reverse=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        rest = scope["path"].removeprefix(root)
        name = next((n for n in self.names if rest == f"/{n}" or rest.startswith(f"/{n}/")), None)
        if name is None:
            body = {"error": f"no model is served at {PREFIX}{rest}", "error_type": "not_found"}
            await JSONResponse(body, status_code=404)(scope, receive, send)
            return
        scope = {**scope, MODEL_PREFIX: name, "root_path": f"{root}/{name}"}
        if rest == f"/{name}":  # the base URL itself: its "/" route
            scope["path"] += "/"
            scope["raw_path"] = scope.get("raw_path", b"") + b"/"
        await self.app(scope, receive, send)


def _model_routes() -> list[BaseRoute]:
    """TGI's routes, the same at the root and under a model's prefix."""
    return [
        Route("/generate", generate, methods=["POST"]),
        Route("/generate_stream", generate_stream, methods=["POST"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/info", info, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/", compat_generate, methods=["POST"]),
    ]


def routes(served_names: Sequence[str]) -> list[BaseRoute]:
    """The root's TGI routes (``GET /`` stays the web page) and the ``/models/{id}`` mount."""
    prefixed = Router(
        [
            *_model_routes(),
            Route("/", health, methods=["GET"]),  # TGI answers GET / as /health
            Route(openai.ROUTE, openai.chat_completions, methods=["POST"]),
        ]
    )
    return [
        *_model_routes(),
        Route("/invocations", compat_generate, methods=["POST"]),  # SageMaker's name for "/"
        Mount(PREFIX, app=ModelPrefix(prefixed, served_names)),
    ]
