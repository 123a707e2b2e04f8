"""Request payloads of the H2o/chat-ui protocol, as the 2023 provider sent them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

H2O_2023_URL = "https://gpt-gm.h2o.ai"  # the hosted site the 2023 provider talked to

# The 2023 provider's short names and the H2o model ids they stand for.
H2O_2023_MODELS: dict[str, str] = {
    "falcon-7b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3",
    "falcon-40b": "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1",
    "llama-13b": "h2oai/h2ogpt-gm-oasst1-en-2048-open-llama-13b",
}

SESSION_COOKIE = "hf-chat"


def resolve_model(name: str) -> str:
    """A 2023 short name as its H2o model id; any other name is taken as a model id."""
    return H2O_2023_MODELS.get(name, name)


def settings_form(model_id: str) -> dict[str, str]:
    """The welcome-modal form the 2023 provider posted to ``/settings``."""
    return {
        "ethicsModalAccepted": "true",
        "shareConversationsWithModelAuthors": "true",
        "ethicsModalAcceptedAt": "",
        "activeModel": model_id,
        "searchEnabled": "true",
    }


def conversation_body(model_id: str, preprompt: str | None = None) -> dict[str, Any]:
    """``POST /conversation``: ``{"model"}``, plus this project's optional ``preprompt``."""
    body: dict[str, Any] = {"model": model_id}
    if preprompt is not None:
        body["preprompt"] = preprompt
    return body


def new_options(id: str | None = None, response_id: str | None = None) -> dict[str, Any]:
    """The 2023 provider's ``options``: fresh uuid4s unless given."""
    return {
        "id": id or str(uuid.uuid4()),
        "response_id": response_id or str(uuid.uuid4()),
        "is_retry": False,
        "use_cache": False,
        "web_search_id": "",
    }


def completion_body(
    inputs: str, parameters: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """``POST /conversation/{id}``, keys in the 2023 provider's order."""
    return {
        "inputs": inputs,
        "parameters": dict(parameters),
        "stream": True,
        "options": dict(options),
    }
