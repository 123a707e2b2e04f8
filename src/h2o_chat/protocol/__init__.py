"""The H2o chat protocol as pure functions and objects: no sockets, no asyncio, no HTTP library.

Prompt text, request payloads, parameter validation, typed stream events, and the
incremental stream parser and encoder shared by the client and the server.
"""

from h2o_chat.protocol.parameters import (
    DEFAULT_PARAMETERS,
    GenerationParameters,
    validate_parameters,
)
from h2o_chat.protocol.prompt import H2O_2023_INSTRUCTION, flatten_messages, validate_messages
from h2o_chat.protocol.stream import StreamParser, encode
from h2o_chat.protocol.types import Details, ErrorEvent, StreamResponse, Token

__all__ = [
    "DEFAULT_PARAMETERS",
    "H2O_2023_INSTRUCTION",
    "Details",
    "ErrorEvent",
    "GenerationParameters",
    "StreamParser",
    "StreamResponse",
    "Token",
    "encode",
    "flatten_messages",
    "validate_messages",
    "validate_parameters",
]
