"""A model that answers with the text a test gives it, and a server that serves it.

``--model ID=python:tests.support.replay:factory`` serves :class:`Replay`: it answers with
the last user message verbatim, cut into three-character tokens so that Markdown and HTML
arrive in pieces as a model's would; each ``{n}`` in it becomes how many answers the engine
has given (so a retried answer differs from the first). Asked for a title (the server's
summarize prompt) it answers, as an obliging model would, with the message's first four
words capitalised and quoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

from h2o_chat.server.backends.base import BackendToken, Job
from h2o_chat.server.routes.conversations import (
    SUMMARY_MAX_NEW_TOKENS,
    SUMMARY_PROMPT,
    clean_title,
)
from h2o_chat.server.store.base import display_title
from tests.support.servers import RunningServer, h2o_server

REPO = Path(__file__).resolve().parents[2]
MODEL = "replay"
SOURCE = f"{MODEL}=python:tests.support.replay:factory"
TOKEN_CHARS = 3
TICK_SECONDS = 0.005  # between tokens: an answer streams over several frames
_TITLE_START, _TITLE_END = SUMMARY_PROMPT.split("{message}")


def title_for(message: str) -> str:
    """The title :class:`Replay` writes for a conversation that starts with ``message``."""
    return " ".join(word.capitalize() for word in message.split()[:4])


def stored_title(message: str) -> str:
    """The title the server keeps from that: as much as the summary's tokens hold, cleaned,
    else (nothing left) the start of the message."""
    written = f'"{title_for(message)}"'[: SUMMARY_MAX_NEW_TOKENS * TOKEN_CHARS]
    return clean_title(written) or display_title(None, message)


def _answer(message: str, ordinal: int) -> str:
    if message.startswith(_TITLE_START) and message.endswith(_TITLE_END):
        first = message.removeprefix(_TITLE_START).removesuffix(_TITLE_END)
        return f'"{title_for(first)}"'
    return message.replace("{n}", str(ordinal))


class Replay:
    kind = "replay"
    parallel = 1
    max_top_n_tokens = 0
    context_length = 1 << 20

    def __init__(self) -> None:
        self._answers = itertools.count(1)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        users = [m.content for m in job.request.messages if m.role == "user"]
        text = _answer(users[-1] if users else "", next(self._answers))
        job.prompt_tokens = 1
        for index in range(0, len(text), TOKEN_CHARS):
            await asyncio.sleep(TICK_SECONDS)
            yield BackendToken(index + 1, text[index : index + TOKEN_CHARS], 0.0)
        yield BackendToken(0, "", 0.0, eos=True)


def factory(model_id: str) -> Replay:
    return Replay()


@contextlib.contextmanager
def replay_server(
    tmp_path: Path, *, db: Path | str | None = None, port: int | None = None
) -> Iterator[RunningServer]:
    """``h2o-chat serve`` with the replay model only (it imports this module)."""
    env = {"PYTHONPATH": str(REPO)}
    with h2o_server(tmp_path, "--model", SOURCE, db=db, port=port, env=env) as server:
        yield server
