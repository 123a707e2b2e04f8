"""The 2023 provider's prompt text and message validation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from h2o_chat.errors import InvalidRequestError

# Byte for byte what the 2023 provider sent, typo included: the hosted models were fed exactly
# this.
H2O_2023_INSTRUCTION = (
    "instruction: this is a conversation beween, a user and an AI assistant, "
    "respond to the latest message, referring to the conversation if needed\n"
)

ROLES = frozenset({"system", "user", "assistant"})

Message = Mapping[str, Any]


def validate_messages(messages: Iterable[Message]) -> list[dict[str, str]]:
    """Check a chat message list and return it as plain ``{"role", "content"}`` dicts.

    Raises :class:`InvalidRequestError` for an empty list, a message that is not a
    mapping, an unknown role or content that is not a string.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise InvalidRequestError("messages must be a list of {'role', 'content'} mappings")
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"messages[{index}] is not a mapping")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequestError(
                f"messages[{index}]['role'] is {role!r}; expected one of {sorted(ROLES)}"
            )
        if not isinstance(content, str):
            raise InvalidRequestError(
                f"messages[{index}]['content'] must be a string, not {type(content).__name__}"
            )
        checked.append({"role": role, "content": content})
    if not checked:
        raise InvalidRequestError("messages is empty: give at least one message")
    return checked


def flatten_messages(messages: Iterable[Message]) -> str:
    """The 2023 provider's stateless prompt: instruction, a ``role: content`` line each, then
    ``assistant:``."""
    lines = [H2O_2023_INSTRUCTION]
    lines.extend(f"{m['role']}: {m['content']}\n" for m in validate_messages(messages))
    lines.append("assistant:")
    return "".join(lines)
