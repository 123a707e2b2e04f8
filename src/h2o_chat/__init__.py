"""h2o-chat: client, provider and self-hostable server for the H2o chat protocol."""

import importlib
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
from h2o_chat.protocol.types import Completion, Details, ModelInfo, StreamResponse, Token

if TYPE_CHECKING:
    from h2o_chat.client import AsyncClient, AsyncConversation, Client, Conversation, RetryPolicy
    from h2o_chat.local import local_async_client, local_client, local_server

__version__ = "0.1.0"

_LAZY_NAMES = {  # name -> the module that defines it
    **dict.fromkeys(
        ("AsyncClient", "AsyncConversation", "Client", "Conversation", "RetryPolicy"), "client"
    ),
    **dict.fromkeys(("local_async_client", "local_client", "local_server"), "local"),
}


def __getattr__(name: str) -> Any:
    """The client's names (and the local server's, built on it), imported on first use, so
    that importing the pure parts of the package (``h2o_chat.protocol``, ``h2o_chat.errors``)
    does not pull in httpx."""
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"h2o_chat.{module}"), name)


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
