"""What the sync and async clients share: configuration, request building and the flows.

Every exchange is written once, as a *flow*: a generator that yields the actions it needs
(:class:`Send` a request, :class:`Sleep`) and is sent back their results (a response or an
:class:`~h2o_chat.errors.H2oError`). The clients only perform the actions, with blocking or
awaiting I/O; no protocol or retry logic lives in them.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import os
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from h2o_chat import errors
from h2o_chat.client._errors import from_response
from h2o_chat.client._receiver import StreamReceiver
from h2o_chat.client._retry import RetryPolicy
from h2o_chat.protocol import payloads
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS, validate_parameters
from h2o_chat.protocol.prompt import Message, flatten_messages
from h2o_chat.protocol.stream import DEFAULT_MAX_LINE_BYTES
from h2o_chat.protocol.types import ModelInfo

log = logging.getLogger("h2o_chat")

T = TypeVar("T")
HttpClient = TypeVar("HttpClient", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)

USER_AGENT = "h2o-chat/0.1"


@dataclass(slots=True, frozen=True)
class Send:
    """Send ``request``; with ``stream`` the body is left unread on success."""

    request: httpx.Request
    stream: bool = False


@dataclass(slots=True, frozen=True)
class Sleep:
    """Wait before the next attempt."""

    seconds: float


Action = Send | Sleep
ActionResult = httpx.Response | errors.H2oError | None
"""What performing an action gives back: a response, the error of a failed send, or None."""
Flow = Generator[Action, ActionResult, T]


def merge_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The 2023 provider's defaults overridden by ``parameters``, validated before any I/O."""
    return validate_parameters({**DEFAULT_PARAMETERS, **parameters})


def check_text(text: Any) -> str:
    """A message must be a non-empty string."""
    if not isinstance(text, str) or not text.strip():
        raise errors.InvalidRequestError("the message must be a non-empty string")
    return text


def model_id(model: Any) -> str:
    """The model id a name stands for (a 2023 short name, or the id itself); it must be a
    non-empty string."""
    if not isinstance(model, str) or not model.strip():
        raise errors.UnknownModelError(f"model must be a non-empty string, not {model!r}")
    return payloads.resolve_model(model)


class ConversationState:
    """A conversation that lives on the server: its model, system prompt, id and history.

    The id is None until the first turn creates the conversation on the server.
    """

    def __init__(self, model: str, system: str | None = None, id: str | None = None) -> None:
        self.model_id = model_id(model)
        self.system = system
        self.id = id
        self.messages: list[dict[str, str]] = []

    def prepare(
        self, text: str, options: Mapping[str, Any] | None, parameters: Mapping[str, Any]
    ) -> TurnRequest:
        """Validate one message to send; nothing touches the network."""
        options = dict(options or {})
        unknown = options.keys() - {"id", "response_id"}
        if unknown:
            raise errors.InvalidRequestError(
                f"unknown options {sorted(unknown)}; known: id, response_id"
            )
        options = payloads.new_options(**options)
        return TurnRequest(self, check_text(text), merge_parameters(parameters), options)

    def record(self, text: str, receiver: StreamReceiver) -> None:
        """Keep the finished exchange in the local history."""
        self.messages.append({"role": "user", "content": text})
        self.messages.append({"role": "assistant", "content": receiver.completion().text})


ClientT = TypeVar("ClientT")


class BaseConversation(Generic[ClientT]):
    """What :class:`Conversation` and :class:`AsyncConversation` share: the client and state."""

    def __init__(
        self, client: ClientT, model: str, system: str | None = None, id: str | None = None
    ) -> None:
        self._client = client
        self.state = ConversationState(model, system, id)

    @property
    def id(self) -> str | None:
        """The server's conversation id, once the first turn created it."""
        return self.state.id

    @property
    def messages(self) -> list[dict[str, str]]:
        """The exchanges completed through this object, oldest first."""
        return self.state.messages


@dataclass(slots=True)
class TurnRequest:
    """One validated message to send in a conversation, with its parameters and options."""

    conversation: ConversationState
    inputs: str
    parameters: dict[str, Any]
    options: dict[str, Any]


class BaseClient(abc.ABC, Generic[HttpClient, Transport]):
    """Configuration and flows shared by :class:`Client` and :class:`AsyncClient`.

    ``base_url``: else ``H2O_CHAT_URL``, else the 2023 hosted site. ``timeout``: the longest
    silence allowed inside a stream (and for any read, write or pool wait). ``max_retries``:
    more attempts after failures before the first token (default 2), overriding
    ``retry.max_retries``; ``retry``: the whole :class:`RetryPolicy`. ``headers``: sent with
    every request. ``max_line_bytes``: the longest stream line accepted. ``proxy``, ``verify``
    (TLS verification, on by default, or a CA bundle path), ``limits`` (the connection pool)
    and ``transport`` are passed to httpx.
    """

    _http: HttpClient

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | None = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        proxy: str | None = None,
        verify: bool | str = True,
        limits: httpx.Limits | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = (
            base_url or os.environ.get("H2O_CHAT_URL") or payloads.H2O_2023_URL
        ).rstrip("/")
        if httpx.URL(self.base_url).scheme not in ("http", "https"):
            raise errors.InvalidRequestError(
                f"base URL {self.base_url!r} must start with http:// or https://"
            )
        self.retry = retry or RetryPolicy()
        if max_retries is not None:
            self.retry = dataclasses.replace(self.retry, max_retries=max_retries)
        self.max_line_bytes = max_line_bytes
        self._has_session = False
        self._open(
            {
                "base_url": self.base_url,
                "timeout": httpx.Timeout(timeout, connect=connect_timeout),
                "headers": {"user-agent": USER_AGENT, "accept": "*/*", **(headers or {})},
                "proxy": proxy,
                "verify": verify,
                # Idle connections expire before common servers' 5 s keep-alive (uvicorn's).
                "limits": limits
                or httpx.Limits(
                    max_connections=100, max_keepalive_connections=20, keepalive_expiry=4
                ),
            },
            transport,
        )

    @abc.abstractmethod
    def _open(self, options: dict[str, Any], transport: Transport | None) -> None:
        """Open the connection pool (``_http``) and the lock that makes the session
        bootstrap happen once."""

    def _receiver(self) -> StreamReceiver:
        return StreamReceiver(max_line_bytes=self.max_line_bytes)

    def _build(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        return self._http.build_request(method, path, **kwargs)

    def _request(self, request: httpx.Request, *, stream: bool = False) -> Flow[httpx.Response]:
        """Send ``request`` until it succeeds or the retry policy says to stop; each of the
        policy's decisions is logged at INFO."""
        where = f"{request.method} {request.url.path}"
        attempt = 0
        while True:
            result = yield Send(request, stream)
            if isinstance(result, httpx.Response):
                if result.is_success:
                    return result
                error: errors.H2oError = from_response(result)
            else:
                assert result is not None
                error = result
            decision = self.retry.decide(attempt, error)
            if decision.delay is None:
                log.info("no retry of %s (%s): %s", where, decision.reason, error.message)
                raise error
            attempt += 1
            log.info(
                "retry %d/%d of %s in %.2fs (%s): %s",
                attempt,
                self.retry.max_retries,
                where,
                decision.delay,
                decision.reason,
                error.message,
            )
            yield Sleep(decision.delay)

    def _session_flow(self, model_id: str) -> Flow[None]:
        """The cookie and welcome-settings bootstrap, once per client."""
        yield from self._request(self._build("GET", "/"))
        form = payloads.settings_form(model_id)
        referer = {"referer": self.base_url + "/", "origin": self.base_url}
        try:
            yield from self._request(self._build("POST", "/settings", data=form, headers=referer))
        except errors.BadRequestError as exc:
            raise errors.UnknownModelError(exc.message) from exc
        self._has_session = True
        log.debug("session ready at %s", self.base_url)

    def _conversation_flow(self, model_id: str, preprompt: str | None) -> Flow[str]:
        body = payloads.conversation_body(model_id, preprompt)
        try:
            response = yield from self._request(self._build("POST", "/conversation", json=body))
        except errors.BadRequestError as exc:
            raise errors.UnknownModelError(exc.message) from exc
        return _decode(response, _NewConversation).conversationId

    def _turn_flow(self, turn: TurnRequest, receiver: StreamReceiver) -> Flow[httpx.Response]:
        """Create the conversation if it is new, then open the answer stream."""
        if turn.conversation.id is None:
            model, preprompt = turn.conversation.model_id, turn.conversation.system
            turn.conversation.id = yield from self._conversation_flow(model, preprompt)
        receiver.conversation_id = turn.conversation.id
        body = payloads.completion_body(turn.inputs, turn.parameters, turn.options)
        request = self._build("POST", f"/conversation/{turn.conversation.id}", json=body)
        return (yield from self._request(request, stream=True))

    def _stateless_turn(
        self,
        model: str,
        messages: Iterable[Message],
        options: Mapping[str, Any] | None,
        parameters: Mapping[str, Any],
    ) -> TurnRequest:
        """The 2023 provider's request: a new conversation holding the flattened messages."""
        state = ConversationState(model)
        return state.prepare(flatten_messages(messages), options, parameters)

    def _stop_flow(self, conversation_id: str) -> Flow[None]:
        yield from self._request(
            self._build("POST", f"/conversation/{conversation_id}/stop-generating")
        )

    def _delete_flow(self, conversation_id: str) -> Flow[None]:
        yield from self._request(self._build("DELETE", f"/conversation/{conversation_id}"))

    def _models_flow(self) -> Flow[list[ModelInfo]]:
        response = yield from self._request(self._build("GET", "/api/models"))
        return _decode(response, list[ModelInfo])


class _NewConversation(msgspec.Struct):
    conversationId: str


def _decode(response: httpx.Response, kind: type[T]) -> T:
    """The JSON body of ``response`` as ``kind``, or :class:`ProtocolError`."""
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.DecodeError as exc:
        path = response.request.url.path
        message = f"unexpected answer to {path} ({exc}): {response.text[:200]!r}"
        raise errors.ProtocolError(message) from exc
