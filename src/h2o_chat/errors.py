"""The exceptions of h2o_chat, rooted in :class:`H2oError` and mapped from the wire in one place."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class H2oError(Exception):
    """Base class of every error this package raises.

    ``partial_text`` holds the answer text delivered before the error, so that a
    stream cut short is never mistaken for a complete answer.
    """

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_text = partial_text


class InvalidRequestError(H2oError, ValueError):
    """A request refused before anything was sent: bad messages, roles or parameters."""


class UnknownModelError(InvalidRequestError):
    """The model is neither a known short name nor served by the server."""


class TransportError(H2oError):
    """The connection could not be made or broke."""


class ConnectError(TransportError):
    """The server could not be reached."""


class TimeoutError(TransportError):
    """Connecting took too long, or the stream stayed silent longer than the read timeout."""


class StreamClosedError(TransportError):
    """The connection closed in the middle of an answer."""


class HTTPStatusError(H2oError):
    """The server answered with an error status."""

    def __init__(self, message: str, *, status_code: int, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code


class BadRequestError(HTTPStatusError):
    """400: the server refused the request's content."""


class AuthenticationError(HTTPStatusError):
    """401 or 403: credentials, referer or session refused."""


class NotFoundError(HTTPStatusError):
    """404: no such conversation for this session, or no such route."""


class RateLimitError(HTTPStatusError):
    """429: too many requests; ``retry_after`` is the server's wait in seconds, if it gave one."""

    def __init__(self, message: str, *, status_code: int, retry_after: float | None) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class ServerError(HTTPStatusError):
    """5xx: the server failed."""


class StreamError(H2oError):
    """The answer stream itself went wrong."""


class GenerationError(StreamError):
    """The server sent an error event (``error_type``: generation, overloaded, validation, ...)."""

    def __init__(self, message: str, *, error_type: str | None, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.error_type = error_type


class ProtocolError(H2oError):
    """The server answered with something that is not the protocol."""


class MalformedStreamError(StreamError, ProtocolError):
    """The stream held bytes that are not the TGI event format.

    ``events`` are the well-formed events the same chunk held before the bad bytes.
    """

    def __init__(self, message: str, *, partial_text: str = "") -> None:
        super().__init__(message, partial_text=partial_text)
        self.events: list[Any] = []


class LocalServerError(H2oError):
    """The built-in server (:mod:`h2o_chat.local`) could not start; its log says why."""


class ServerNotInstalledError(LocalServerError):
    """The built-in server needs the ``server`` extra: ``pip install 'h2o-chat[server]'``."""

    def __init__(self, message: str, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing  # the extra's modules that are not installed


_STATUS_ERRORS: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    410: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
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


def from_response(response: httpx.Response) -> HTTPStatusError:
    """The error for an HTTP error response (whose body has been read)."""
    status = response.status_code
    message = f"HTTP {status} from {response.request.method} {response.request.url.path}: "
    message += _error_message(response)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitError(message, status_code=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status_code=status)
    return _STATUS_ERRORS.get(status, HTTPStatusError)(message, status_code=status)


def from_transport(exc: httpx.TransportError, *, partial_text: str = "") -> TransportError:
    """The error for an httpx transport failure, with ``exc`` as its cause."""
    error: TransportError
    if isinstance(exc, httpx.TimeoutException):
        kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
        error = TimeoutError(f"{kind} timeout: {exc}", partial_text=partial_text)
    elif isinstance(exc, httpx.ConnectError):
        error = ConnectError(f"cannot connect: {exc}", partial_text=partial_text)
    else:
        detail = str(exc) or type(exc).__name__
        error = StreamClosedError(f"connection broken: {detail}", partial_text=partial_text)
    error.__cause__ = exc
    return error
