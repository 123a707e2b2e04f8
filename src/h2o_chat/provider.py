"""The 2023 H2o provider's interface, exact, as a thin shim over :class:`h2o_chat.Client`.

``_create_completion(model, messages, stream, **kwargs)`` sends what the 2023 provider sent
(its flattened prompt, parameters and options) and yields the answer's text tokens. Unlike
the original it reuses one client, one session and one connection pool per base URL.

The 2023 site is gone: with no ``base_url=`` and no ``H2O_CHAT_URL`` the answer comes from
the built-in model, served in this process (:func:`h2o_chat.local.shared_server_url`). ``url``
keeps the 2023 value; pass it as ``base_url=`` to talk to that site.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from typing import Any, get_type_hints

from h2o_chat import local
from h2o_chat.client import Client
from h2o_chat.protocol.payloads import H2O_2023_MODELS, H2O_2023_URL
from h2o_chat.protocol.types import END_OF_TEXT

url = H2O_2023_URL
model = ["falcon-40b", "falcon-7b", "llama-13b"]
supports_stream = True
needs_auth = False
models = dict(H2O_2023_MODELS)

_OPTION_KWARGS = ("id", "response_id")
_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()


def _client_for(base_url: str) -> Client:
    with _clients_lock:
        client = _clients.get(base_url)
        if client is None:
            client = _clients[base_url] = Client(base_url)
        return client


def _create_completion(
    model: str, messages: list[dict[str, str]], stream: bool, **kwargs: Any
) -> Generator[str, None, None]:
    """Yield the answer's text tokens (``stream=True``) or the whole answer once.

    ``kwargs``: any TGI parameter (``temperature``, ``max_new_tokens``, ``top_k``, ...), the
    ``id`` and ``response_id`` options, and ``base_url`` (else ``H2O_CHAT_URL``, else the
    built-in model, started in this process by the first such call and reused by the next).
    Bad arguments raise :class:`h2o_chat.InvalidRequestError` at once; without the server
    extra, an unconfigured call raises :class:`h2o_chat.ServerNotInstalledError`.
    """
    base_url = (
        kwargs.pop("base_url", None) or os.environ.get("H2O_CHAT_URL") or local.shared_server_url()
    )
    options = {key: kwargs.pop(key) for key in _OPTION_KWARGS if key in kwargs}
    client = _client_for(base_url)
    events = client.chat_stream(model, messages, options=options, **kwargs)
    return _tokens(events) if stream else _whole(_tokens(events))


def _tokens(events: Any) -> Generator[str, None, None]:
    """The 2023 provider's loop: text tokens until the ``<|endoftext|>`` token, special tokens
    skipped."""
    ended = False
    for event in events:  # read to the end, so the connection goes back to the pool
        token = event.token
        if ended or (token.special and token.text != END_OF_TEXT):
            continue
        if token.text == END_OF_TEXT:
            ended = True
            continue
        yield token.text


def _whole(tokens: Generator[str, None, None]) -> Generator[str, None, None]:
    yield "".join(tokens)


params = f"{__name__} supports: " + "({})".format(
    ", ".join(
        f"{name}: {get_type_hints(_create_completion)[name].__name__}"
        for name in _create_completion.__code__.co_varnames[
            : _create_completion.__code__.co_argcount
        ]
    )
)
