"""The exceptions of h2o_chat, all rooted in :class:`H2oError`.

This module imports nothing but the standard library, so the pure ``protocol`` layer can
raise them without pulling in an HTTP library; the client maps httpx's failures and HTTP
error responses onto them (``h2o_chat.client._errors``). The hierarchy::

    H2oError
    ├── InvalidRequestError (also ValueError): refused before anything was sent
    │   └── UnknownModelError
    ├── TransportError
    │   ├── ConnectError
    │   ├── TimeoutException
    │   └── StreamClosedError
    ├── HTTPStatusError
    │   ├── BadRequestError
    │   ├── AuthenticationError
    │   ├── NotFoundError
    │   ├── RateLimitError
    │   └── ServerError
    ├── StreamError
    │   ├── GenerationError
    │   └── MalformedStreamError (also ProtocolError)
    ├── ProtocolError
    └── LocalServerError: the built-in server (h2o_chat.local) could not start
        └── ServerNotInstalledError: the ``server`` extra is missing
"""

from __future__ import annotations


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
    """The connection could not be made or broke (raised as such for a connection that
    failed before any answer began, e.g. a kept-alive connection the server had closed)."""


class ConnectError(TransportError):
    """The server could not be reached."""


class TimeoutException(TransportError):
    """Connecting took too long, or the stream stayed silent longer than the read timeout.

    Named as httpx names it, so that it does not shadow the builtin ``TimeoutError``.
    """


class StreamClosedError(TransportError):
    """The answer stream closed before its final event."""


class HTTPStatusError(H2oError):
    """The server answered with an error status; ``retry_after`` is the wait in seconds its
    Retry-After asked for, if it gave one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: float | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code
        self.retry_after = retry_after


class BadRequestError(HTTPStatusError):
    """400: the server refused the request's content."""


class AuthenticationError(HTTPStatusError):
    """401 or 403: credentials, referer or session refused."""


class NotFoundError(HTTPStatusError):
    """404: no such conversation for this session, or no such route."""


class RateLimitError(HTTPStatusError):
    """429: too many requests."""


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
    """The stream held bytes that are not the TGI event format."""


class LocalServerError(H2oError):
    """The built-in server (:mod:`h2o_chat.local`) could not start; its log says why."""


class ServerNotInstalledError(LocalServerError):
    """The built-in server needs the ``server`` extra: ``pip install 'h2o-chat[server]'``."""

    def __init__(self, message: str, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing  # the extra's modules that are not installed
