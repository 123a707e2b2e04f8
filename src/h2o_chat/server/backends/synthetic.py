"""A zero-latency fake engine for tests and benchmarks, never the default.

``synthetic`` echoes the words of the last user message (``"first"``, ``" next"``, ...);
``synthetic:N`` yields N tokens ``" tok"``. Both then end with the end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from h2o_chat.server.backends.base import BackendToken, Job, context_error

SYNTHETIC_CONTEXT_LENGTH = 8192
EOS_ID = 0
TOKEN_ID = 1


class SyntheticBackend:
    """Echo (``count`` None) or ``count`` tokens ``" tok"``; see the module docstring."""

    kind = "synthetic"
    parallel = 1
    max_top_n_tokens = 0
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
        for index, text in enumerate(texts):
            yield BackendToken(TOKEN_ID + index, text, 0.0)
        yield BackendToken(EOS_ID, "", 0.0, eos=True)

    async def aclose(self) -> None:
        return None
