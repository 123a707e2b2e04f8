"""The blocking client: performs the shared flows with ``httpx.Client``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from h2o_chat.client._base import (
    Action,
    ActionResult,
    BaseClient,
    BaseConversation,
    Flow,
    Send,
    T,
    TurnRequest,
)
from h2o_chat.client._errors import from_transport
from h2o_chat.client._receiver import StreamReceiver
from h2o_chat.protocol.parameters import GenerationParameters
from h2o_chat.protocol.prompt import Message
from h2o_chat.protocol.types import Completion, ModelInfo, StreamResponse


class Client(BaseClient[httpx.Client, httpx.BaseTransport]):
    """A client of an H2o/chat-ui server, with one connection pool and one session.

    >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     for event in client.chat_stream("falcon-7b", [{"role": "user", "content": "Hi"}]):
    ...         print(event.token.text, end="")
    """

    def _open(self, options: dict[str, Any], transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(**options, transport=transport)
        self._session_lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def chat(
        self,
        model: str,
        messages: Iterable[Message],
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Completion:
        """The 2023 provider's stateless request, answered whole."""
        return self._complete(self._stateless_turn(model, messages, options, parameters))

    def chat_stream(
        self,
        model: str,
        messages: Iterable[Message],
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Iterator[StreamResponse]:
        """The 2023 provider's stateless request, answered event by event."""
        turn = self._stateless_turn(model, messages, options, parameters)
        return self._stream(turn, self._receiver())

    def conversation(
        self, model: str, *, system: str | None = None, id: str | None = None
    ) -> Conversation:
        """A conversation that lives on the server (``id`` resumes an existing one)."""
        return Conversation(self, model, system, id)

    def models(self) -> list[ModelInfo]:
        """The models the server serves (this project's ``GET /api/models``)."""
        return self._run(self._models_flow())

    def _complete(self, turn: TurnRequest) -> Completion:
        receiver = self._receiver()
        for _ in self._stream(turn, receiver):
            pass
        return receiver.completion()

    def _stream(self, turn: TurnRequest, receiver: StreamReceiver) -> Iterator[StreamResponse]:
        self._ensure_session(turn.conversation.model_id)
        response = self._run(self._turn_flow(turn, receiver))
        try:
            for chunk in response.iter_bytes():
                yield from receiver.feed(chunk)
        except httpx.TransportError as exc:
            if receiver.final is None:
                raise receiver.transport_error(exc) from exc
        finally:
            response.close()
        yield from receiver.finish()
        turn.conversation.record(turn.inputs, receiver)

    def _ensure_session(self, model_id: str) -> None:
        if self._has_session:
            return
        with self._session_lock:
            if not self._has_session:
                self._run(self._session_flow(model_id))

    def _run(self, flow: Flow[T]) -> T:
        result: ActionResult = None
        while True:
            try:
                action = flow.send(result)
            except StopIteration as done:
                value: T = done.value
                return value
            result = self._perform(action)

    def _perform(self, action: Action) -> ActionResult:
        if not isinstance(action, Send):
            time.sleep(action.seconds)
            return None
        try:
            response = self._http.send(action.request, stream=action.stream)
            if action.stream and not response.is_success:
                try:
                    response.read()
                finally:
                    response.close()
        except httpx.TransportError as exc:
            return from_transport(exc)
        return response


class Conversation(BaseConversation["Client"]):
    """A conversation on the server: each turn sends only the new message."""

    def send(
        self,
        text: str,
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Completion:
        """Send ``text`` and return the whole answer."""
        return self._client._complete(self.state.prepare(text, options, parameters))

    def stream(
        self,
        text: str,
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Iterator[StreamResponse]:
        """Send ``text`` and yield the answer event by event."""
        turn = self.state.prepare(text, options, parameters)
        return self._client._stream(turn, self._client._receiver())

    def stop(self) -> None:
        """Ask the server to stop the answer being generated."""
        if self.state.id is not None:
            self._client._run(self._client._stop_flow(self.state.id))

    def delete(self) -> None:
        """Delete the conversation on the server."""
        if self.state.id is not None:
            self._client._run(self._client._delete_flow(self.state.id))
            self.state.id = None
