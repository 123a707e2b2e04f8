"""The asyncio client: performs the shared flows with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
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


class AsyncClient(BaseClient[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The asyncio twin of :class:`~h2o_chat.Client`, with the same methods awaited."""

    def _open(self, options: dict[str, Any], transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(**options, transport=transport)
        self._session_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def chat(
        self,
        model: str,
        messages: Iterable[Message],
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Completion:
        """The 2023 provider's stateless request, answered whole."""
        return await self._complete(self._stateless_turn(model, messages, options, parameters))

    def chat_stream(
        self,
        model: str,
        messages: Iterable[Message],
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> AsyncIterator[StreamResponse]:
        """The 2023 provider's stateless request, answered event by event."""
        turn = self._stateless_turn(model, messages, options, parameters)
        return self._stream(turn, self._receiver())

    def conversation(
        self, model: str, *, system: str | None = None, id: str | None = None
    ) -> AsyncConversation:
        """A conversation that lives on the server (``id`` resumes an existing one)."""
        return AsyncConversation(self, model, system, id)

    async def models(self) -> list[ModelInfo]:
        """The models the server serves (this project's ``GET /api/models``)."""
        return await self._run(self._models_flow())

    async def _complete(self, turn: TurnRequest) -> Completion:
        receiver = self._receiver()
        async for _ in self._stream(turn, receiver):
            pass
        return receiver.completion()

    async def _stream(
        self, turn: TurnRequest, receiver: StreamReceiver
    ) -> AsyncIterator[StreamResponse]:
        await self._ensure_session(turn.conversation.model_id)
        response = await self._run(self._turn_flow(turn, receiver))
        try:
            async for chunk in response.aiter_bytes():
                for event in receiver.feed(chunk):
                    yield event
        except httpx.TransportError as exc:
            if receiver.final is None:
                raise receiver.transport_error(exc) from exc
        finally:
            await response.aclose()
        for event in receiver.finish():
            yield event
        turn.conversation.record(turn.inputs, receiver)

    async def _ensure_session(self, model_id: str) -> None:
        if self._has_session:
            return
        async with self._session_lock:
            if not self._has_session:
                await self._run(self._session_flow(model_id))

    async def _run(self, flow: Flow[T]) -> T:
        result: ActionResult = None
        while True:
            try:
                action = flow.send(result)
            except StopIteration as done:
                value: T = done.value
                return value
            result = await self._perform(action)

    async def _perform(self, action: Action) -> ActionResult:
        if not isinstance(action, Send):
            await asyncio.sleep(action.seconds)
            return None
        try:
            response = await self._http.send(action.request, stream=action.stream)
            if action.stream and not response.is_success:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TransportError as exc:
            return from_transport(exc)
        return response


class AsyncConversation(BaseConversation["AsyncClient"]):
    """The asyncio twin of :class:`~h2o_chat.Conversation`."""

    async def send(
        self,
        text: str,
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> Completion:
        """Send ``text`` and return the whole answer."""
        return await self._client._complete(self.state.prepare(text, options, parameters))

    def stream(
        self,
        text: str,
        *,
        options: Mapping[str, Any] | None = None,
        **parameters: Unpack[GenerationParameters],
    ) -> AsyncIterator[StreamResponse]:
        """Send ``text`` and yield the answer event by event."""
        turn = self.state.prepare(text, options, parameters)
        return self._client._stream(turn, self._client._receiver())

    async def stop(self) -> None:
        """Ask the server to stop the answer being generated."""
        if self.state.id is not None:
            await self._client._run(self._client._stop_flow(self.state.id))

    async def delete(self) -> None:
        """Delete the conversation on the server."""
        if self.state.id is not None:
            await self._client._run(self._client._delete_flow(self.state.id))
            self.state.id = None
