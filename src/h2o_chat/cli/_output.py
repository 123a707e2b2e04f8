"""Terminal output shared by the commands: the one-line error, the spinner, tables, JSON lines."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, TextIO

import orjson

from h2o_chat.errors import ServerNotInstalledError
from h2o_chat.local import SERVER_EXTRA

log = logging.getLogger("h2o_chat.cli")


class CLIError(Exception):
    """A failure to report as one ``error: ...`` line on stderr, exiting with status 1."""


@contextlib.contextmanager
def server_extra(what: str, otherwise: str = "") -> Iterator[None]:
    """:class:`ServerNotInstalledError` (a plain ``pip install h2o-chat`` has only the client)
    as one line saying what needs the extra and how to install it."""
    try:
        yield
    except ServerNotInstalledError as exc:
        missing = ", ".join(exc.missing)
        raise CLIError(
            f"{what} needs the server extra ({missing} not installed): {SERVER_EXTRA}{otherwise}"
        ) from exc


def one_line(text: str, limit: int = 300) -> str:
    """``text`` fit for an ``error:`` line: an HTML page in it cut off, whitespace collapsed,
    no final period, at most ``limit`` characters."""
    text = re.split(r"<!doctype|<html", text, maxsplit=1, flags=re.IGNORECASE)[0]
    text = " ".join(text.split()).rstrip(":. ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_line(obj: Any, out: TextIO | None = None) -> None:
    """Write ``obj`` as one compact JSON line and flush."""
    out = out or sys.stdout
    out.write(orjson.dumps(obj).decode() + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns under upper-case headers, like ``gh`` lists."""
    cells = [[h.upper() for h in headers], *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = (
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
    return "\n".join(lines)


class Spinner:
    """``⠋ message`` redrawn on stderr while a block runs, only when stderr is a terminal."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, message: str, stream: TextIO | None = None) -> None:
        self.message = message
        self.stream = stream or sys.stderr
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Spinner:
        if self.stream.isatty():
            self._thread = threading.Thread(target=self._spin, name="h2o-chat-spinner", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            self.stream.write(f"\r{frame} {self.message}")
            self.stream.flush()
            if self._done.wait(0.1):
                return
