"""The ASGI application: chat-ui's routes, the OpenAI and TGI front doors, /metrics, the gates
and error answers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from h2o_chat.errors import InvalidRequestError
from h2o_chat.server.config import ServerConfig
from h2o_chat.server.http import ApiError, JSONResponse, error_response, route_path
from h2o_chat.server.middleware import BodyLimit, RefererCheck, SessionMiddleware
from h2o_chat.server.routes import conversations, h2o, openai, ops, page, tgi
from h2o_chat.server.runtime import Runtime
from h2o_chat.server.store.base import StoreUnavailable

logger = logging.getLogger("h2o_chat.server")


def _error(request: Request, error: ApiError) -> Response:
    """``{"error": message}``, or OpenAI's error object on ``/v1/`` routes."""
    if route_path(request).startswith("/v1/"):  # also under a /models/{id} prefix
        body = {
            "message": error.message,
            "type": error.error_type,
            "param": None,
            "code": error.code,
        }
        return JSONResponse({"error": body}, status_code=error.status)
    return error_response(error.status, error.message)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error(request, exc)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    return _error(request, ApiError(400, str(exc)))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, ApiError(exc.status_code, exc.detail))


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """503 while the database cannot answer (restarting, unreachable); one line in the log."""
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return _error(request, ApiError(503, "database unavailable", error_type="server_error"))


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(request, ApiError(500, "internal server error", error_type="server_error"))


def create_app(config: ServerConfig) -> Starlette:
    """The app for ``config``; its lifespan opens the store and loads the models."""
    runtime = Runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    app = Starlette(
        routes=[
            *page.routes(),
            *h2o.routes(),
            *conversations.routes(),
            *openai.routes(),
            *tgi.routes(config.served_names),
            *ops.routes(),
        ],
        middleware=[
            Middleware(SessionMiddleware),
            Middleware(RefererCheck),
            Middleware(BodyLimit, max_bytes=config.max_body_bytes),
        ],
        exception_handlers={
            ApiError: _api_error,
            InvalidRequestError: _invalid_request,
            HTTPException: _http_exception,
            StoreUnavailable: _store_unavailable,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
