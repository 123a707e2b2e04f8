"""The web chat page: ``GET /`` and its scripts, styles and vendored libraries under /static.

The page shows model output, which is untrusted. Its scripts sanitise every answer; the
Content-Security-Policy below backs that up: scripts, styles and requests from this origin
only, nothing inline, no frames, no images but the page's own.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # the settings form needs its Referer; links get none
}


def static_directory() -> Path:
    return Path(str(importlib.resources.files("h2o_chat.server") / "static"))


class _StaticFiles(StaticFiles):
    """Starlette's static files, with the page's security headers on each."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS)
        return response


def routes() -> list[BaseRoute]:
    directory = static_directory()
    page = (directory / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    return [
        Route("/", index, methods=["GET"]),
        Mount("/static", _StaticFiles(directory=directory), name="static"),
    ]
