"""h2o-chat: client, provider and self-hostable server for the H2o chat protocol."""

from h2o_chat.client import AsyncClient, AsyncConversation, Client, Conversation, RetryPolicy
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
    TimeoutError,
    TransportError,
    UnknownModelError,
)
from h2o_chat.local import local_async_client, local_client, local_server
from h2o_chat.protocol.types import Completion, Details, ModelInfo, StreamResponse, Token

__version__ = "0.1.0"

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
    "TimeoutError",
    "Token",
    "TransportError",
    "UnknownModelError",
    "__version__",
    "local_async_client",
    "local_client",
    "local_server",
]
