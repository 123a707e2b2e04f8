"""h2o-chat: client, provider and self-hostable server for the H2o chat protocol."""

from typing import TYPE_CHECKING, Any

from h2o_chat.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectError,
    GenerationError,
    H2oError,
    HTTPStatusError,
    InvalidRequestError,
    LocalServerError,
    MalformedStreamError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    ServerNotInstalledError,
    StreamClosedError,
    StreamError,
    TimeoutException,
    TransportError,
    UnknownModelError,
)
from h2o_chat.local import local_async_client, local_client, local_server
from h2o_chat.protocol.types import Completion, Details, ModelInfo, StreamResponse, Token

if TYPE_CHECKING:
    from h2o_chat.client import AsyncClient, AsyncConversation, Client, Conversation, RetryPolicy

__version__ = "0.1.0"

_CLIENT_NAMES = frozenset(
    {"AsyncClient", "AsyncConversation", "Client", "Conversation", "RetryPolicy"}
)


def __getattr__(name: str) -> Any:
    """The client's names, imported on first use, so that importing the pure parts of the
    package (``h2o_chat.protocol``, ``h2o_chat.errors``) does not pull in httpx."""
    if name not in _CLIENT_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from h2o_chat import client

    return getattr(client, name)


__all__ = [
    "AsyncClient",
    "AsyncConversation",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "Completion",
    "ConnectError",
    "Conversation",
    "Details",
    "GenerationError",
    "H2oError",
    "HTTPStatusError",
    "InvalidRequestError",
    "LocalServerError",
    "MalformedStreamError",
    "ModelInfo",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServerNotInstalledError",
    "StreamClosedError",
    "StreamError",
    "StreamResponse",
    "TimeoutException",
    "Token",
    "TransportError",
    "UnknownModelError",
    "__version__",
    "local_async_client",
    "local_client",
    "local_server",
]
