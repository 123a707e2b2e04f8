"""Driving the web page in the browser tests: load it, ask, wait, and watch what it does."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import ConsoleMessage, Dialog, Locator, Page, Request, Response, expect

ANSWER_TIMEOUT_MS = 120_000


def open_page(page: Page, url: str) -> Response:
    """Load the page and wait until models, settings and the conversation list are in."""
    response = page.goto(url + "/")
    assert response is not None
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return response


def ask(page: Page, text: str) -> Locator:
    """Type ``text``, press Enter; the assistant message that will hold the answer."""
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")
    return page.locator("#messages .msg.assistant").last


def answered(answer: Locator) -> Locator:
    """Wait until ``answer`` has finished streaming; its rendered body."""
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=ANSWER_TIMEOUT_MS)
    return answer.locator(".text")


def sidebar_titles(page: Page) -> Locator:
    """The titles in the conversation list, in order."""
    return page.locator("#conversations .conversation .open")


@dataclass
class Watch:
    """What a page did: its requests, console errors, uncaught errors and dialogs."""

    origin: str
    requests: list[str] = field(default_factory=list)  # attempted, blocked ones too
    responses: list[str] = field(default_factory=list)  # URLs that answered
    failures: dict[str, str] = field(default_factory=dict)  # URL: why the browser gave up
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but the page's own origin."""
        return [url for url in self.requests if _origin(url) != _origin(self.origin)]

    def foreign_responses(self) -> list[str]:
        return [url for url in self.responses if _origin(url) != _origin(self.origin)]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def watch(page: Page, origin: str) -> Watch:
    """Start recording what ``page`` does (dialogs are dismissed)."""
    seen = Watch(origin)

    def on_request(request: Request) -> None:
        seen.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_failed(request: Request) -> None:
        seen.failures[request.url] = request.failure or ""

    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    page.on("response", lambda response: seen.responses.append(response.url))
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("dialog", on_dialog)
    return seen
