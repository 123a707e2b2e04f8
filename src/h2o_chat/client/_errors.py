"""httpx's failures and HTTP error responses as :mod:`h2o_chat.errors`, mapped in one place."""

from __future__ import annotations

import email.utils
import time

import httpx

from h2o_chat import errors

_STATUS_ERRORS: dict[int, type[errors.HTTPStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.AuthenticationError,
    404: errors.NotFoundError,
    410: errors.NotFoundError,
    413: errors.BadRequestError,
    422: errors.BadRequestError,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


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
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return errors.RateLimitError(message, status_code=status, retry_after=retry_after)
    if status >= 500:
        return errors.ServerError(message, status_code=status)
    return _STATUS_ERRORS.get(status, errors.HTTPStatusError)(message, status_code=status)


def from_transport(exc: httpx.TransportError, *, partial_text: str = "") -> errors.TransportError:
    """The error for an httpx transport failure, with ``exc`` as its cause."""
    error: errors.TransportError
    if isinstance(exc, httpx.TimeoutException):
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        error = errors.TimeoutError(f"{kind} timeout: {exc}", partial_text=partial_text)
    elif isinstance(exc, httpx.ConnectError):
        error = errors.ConnectError(f"cannot connect: {exc}", partial_text=partial_text)
    else:
        detail = str(exc) or type(exc).__name__
        error = errors.StreamClosedError(f"connection broken: {detail}", partial_text=partial_text)
    error.__cause__ = exc
    return error
