"""httpx's failures and HTTP error responses as :mod:`h2o_chat.errors`, mapped in one place."""

from __future__ import annotations

import httpx

from h2o_chat import errors
from h2o_chat.client._retry import parse_retry_after

_STATUS_ERRORS: dict[int, type[errors.HTTPStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.AuthenticationError,
    404: errors.NotFoundError,
    410: errors.NotFoundError,
    413: errors.BadRequestError,
    422: errors.BadRequestError,
    429: errors.RateLimitError,
}


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    if "html" in response.headers.get("content-type", ""):  # a web page: its status says enough
        return response.reason_phrase
    text = " ".join(response.text.split())
    return text[:200] or response.reason_phrase


def from_response(response: httpx.Response) -> errors.HTTPStatusError:
    """The error for an HTTP error response (whose body has been read)."""
    status = response.status_code
    message = f"HTTP {status} from {response.request.method} {response.request.url.path}: "
    message += _error_message(response)
    kind = errors.ServerError if status >= 500 else _STATUS_ERRORS.get(status)
    return (kind or errors.HTTPStatusError)(
        message, status_code=status, retry_after=parse_retry_after(response.headers)
    )


def from_transport(
    exc: httpx.TransportError, *, partial_text: str | None = None
) -> errors.TransportError:
    """The error for an httpx transport failure, with ``exc`` as its cause.

    ``partial_text`` is the answer received so far when the failure broke an answer stream
    (a :class:`~h2o_chat.errors.StreamClosedError` unless it timed out); None when it came
    before any response.
    """
    error: errors.TransportError
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        error = errors.TimeoutException(f"{kind} timeout: {exc}")
    elif isinstance(exc, httpx.ConnectError):
        error = errors.ConnectError(f"cannot connect: {exc}")
    elif partial_text is not None:
        error = errors.StreamClosedError(f"connection broken: {detail}")
    else:
        error = errors.TransportError(f"connection broken before the answer: {detail}")
    error.partial_text = partial_text or ""
    error.__cause__ = exc
    return error
