"""A zero-latency fake engine for tests and benchmarks, never the default.

``synthetic`` echoes the words of the last user message (``"first"``, ``" next"``, ...);
``synthetic:N`` yields N tokens ``" tok"``. Both then end with the end-of-sequence token.
Token ids count from 1 in each answer, and :meth:`SyntheticBackend.tokenize` numbers the words
of a text the same way, so echoing a text gives back the ids it tokenizes to. Asked for
``top_n_tokens``, each token comes with itself as the most likely alternative, then
``" alt"`` tokens at a negligible probability.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from h2o_chat.server.backends.base import BackendToken, Job, TokenSpan, context_error

SYNTHETIC_CONTEXT_LENGTH = 8192
MAX_TOP_N_TOKENS = 5  # TGI's default --max-top-n-tokens
EOS_ID = 0
TOKEN_ID = 1
ALTERNATIVE_ID = 2**20  # beyond any id an answer or a tokenized text uses
ALTERNATIVE_LOGPROB = -30.0
WORD = re.compile(r"\s*\S+")


class SyntheticBackend:
    """Echo (``count`` None) or ``count`` tokens ``" tok"``; see the module docstring."""

    kind = "synthetic"
    parallel = 1
    max_top_n_tokens = MAX_TOP_N_TOKENS
    context_length = SYNTHETIC_CONTEXT_LENGTH

    def __init__(self, count: int | None = None) -> None:
        self.count = count

    async def start(self) -> None:
        return None

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        request = job.request
        job.prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        if job.prompt_tokens + request.max_new_tokens > self.context_length:
            raise context_error(job.prompt_tokens, request.max_new_tokens, self.context_length)
        if self.count is None:
            users = [m.content for m in request.messages if m.role == "user"]
            last_user = users[-1] if users else ""
            texts = [("" if i == 0 else " ") + word for i, word in enumerate(last_user.split())]
        else:
            texts = [" tok"] * self.count
        top_n = request.top_n_tokens
        for index, text in enumerate(texts):
            yield _with_alternatives(BackendToken(TOKEN_ID + index, text, 0.0), top_n)
        yield _with_alternatives(BackendToken(EOS_ID, "", 0.0, eos=True), top_n)

    async def tokenize(self, text: str) -> list[TokenSpan]:
        """One token per word with the spaces before it, numbered from 1, as answers are."""
        return [
            TokenSpan(TOKEN_ID + index, match.group(), match.start(), match.end())
            for index, match in enumerate(WORD.finditer(text))
        ]

    async def aclose(self) -> None:
        return None


def _with_alternatives(token: BackendToken, top_n_tokens: int) -> BackendToken:
    """``token`` with its ``top_n_tokens`` most likely tokens: itself, then ``" alt"`` ones."""
    if not top_n_tokens:
        return token
    alternatives = tuple(
        BackendToken(ALTERNATIVE_ID + rank, " alt", ALTERNATIVE_LOGPROB)
        for rank in range(top_n_tokens - 1)
    )
    return BackendToken(
        token.id, token.text, token.logprob, token.eos, top_tokens=(token, *alternatives)
    )
