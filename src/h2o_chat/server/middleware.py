"""Gates before every route, as chat-ui's hooks: session cookie, referer check, body limit."""

from __future__ import annotations

import email.utils
import time
import uuid
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from h2o_chat.protocol.payloads import SESSION_COOKIE
from h2o_chat.server.http import ApiError, error_response

COOKIE_MAX_AGE = 365 * 24 * 3600
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded", "text/plain"})


def _valid_session(value: str | None) -> bool:
    if not value:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def session_cookie(session: str, secure: bool) -> str:
    """``Set-Cookie`` for a session: one year, HttpOnly; Secure + SameSite=None only on https."""
    expires = email.utils.formatdate(time.time() + COOKIE_MAX_AGE, usegmt=True)
    flags = "Secure; SameSite=None" if secure else "SameSite=Lax"
    return f"{SESSION_COOKIE}={session}; Path=/; Expires={expires}; HttpOnly; {flags}"


class SessionMiddleware:
    """Puts the session (the cookie's uuid4, or a fresh one with its cookie) in scope state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
        session = cookies.get(SESSION_COOKIE)
        minted = not _valid_session(session)
        if minted:
            session = str(uuid.uuid4())
        scope.setdefault("state", {})[SESSION_COOKIE] = session

        async def send_with_cookie(message: Message) -> None:
            if minted and message["type"] == "http.response.start":
                cookie = session_cookie(str(session), scope.get("scheme") == "https")
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class RefererCheck:
    """A form POST must come with a Referer of this site's own origin, else 403."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = Headers(scope=scope)
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind in FORM_TYPES:
                referer = headers.get("referer")
                own = (scope.get("scheme", "http"), headers.get("host", "").lower())
                message = None
                if not referer:
                    message = "Non-JSON form requests need to have a referer"
                elif _origin(referer) != own:
                    message = "Invalid referer for POST request"
                if message:
                    await error_response(403, message)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BodyLimit:
    """Bodies over ``max_bytes`` get 413: by Content-Length at once, else while being read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_large = f"the request body is over the limit of {self.max_bytes} bytes"
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, too_large)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(413, too_large)
            return message

        await self.app(scope, limited_receive, send)
