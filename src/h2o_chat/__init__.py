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
    MalformedStreamError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamClosedError,
    StreamError,
    TimeoutError,
    TransportError,
    UnknownModelError,
)
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
    "MalformedStreamError",
    "ModelInfo",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "StreamClosedError",
    "StreamError",
    "StreamResponse",
    "TimeoutError",
    "Token",
    "TransportError",
    "UnknownModelError",
    "__version__",
]
