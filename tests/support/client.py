"""An H2o server faked in-process with ``httpx.MockTransport``, for the client's own tests.

It answers the session bootstrap and conversation creation at once; each answer request
gets the next of the planned ``answers`` (a response, or an httpx exception to raise), and
a whole three-token answer once they run out. For the I/O paths that need a real socket
(resets, stalls, chunking), ``tests.support.faultserver`` runs a real server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from h2o_chat import AsyncClient, Client
from h2o_chat.protocol.stream import encode
from h2o_chat.protocol.types import END_OF_TEXT, StreamResponse, Token

URL = "http://h2o.test"
WORDS = ("Hello", " wide", " world")
ANSWER = b"".join(
    [
        *(encode(StreamResponse(Token(i, word, -0.5))) for i, word in enumerate(WORDS)),
        encode(StreamResponse(Token(9, END_OF_TEXT, 0.0, True), "".join(WORDS))),
    ]
)


class FakeServer:
    """The fake, and every request it saw."""

    def __init__(self, answers: Iterable[httpx.Response | httpx.TransportError] = ()) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/conversation":
            return httpx.Response(200, json={"conversationId": "c1"})
        if not request.url.path.startswith("/conversation/"):
            return httpx.Response(200, text="ok")
        if not self.answers:
            return httpx.Response(200, content=ANSWER)
        answer = self.answers.pop(0)
        if isinstance(answer, httpx.TransportError):
            raise answer
        return answer

    @property
    def answer_requests(self) -> int:
        """How many times the answer was asked for."""
        return sum(r.url.path == "/conversation/c1" for r in self.requests)

    def client(self, **options: Any) -> Client:
        return Client(URL, transport=httpx.MockTransport(self.handle), **options)

    def async_client(self, **options: Any) -> AsyncClient:
        return AsyncClient(URL, transport=httpx.MockTransport(self.handle), **options)
