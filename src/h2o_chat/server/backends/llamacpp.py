"""llama.cpp in-process, from the prebuilt ``xllamacpp`` wheel: continuous batching over slots.

``xllamacpp.Server`` runs llama.cpp's own server loop on a C++ thread: ``parallel`` slots decode
together. Each generation calls ``handle_completions`` on a worker thread (it blocks, with the
GIL released) and gets one chunk per token through a callback, whose ``True`` cancels the
request and frees its slot.

Memory is fixed when the model loads: each slot has its own KV cache of ``ctx_size`` tokens
(not one cache shared by all: in a shared cache, a request that fills it fails every running
request, and a sampled answer depends on what else runs beside it). Before a request reaches
the engine its prompt is rendered and tokenized, ``truncate`` applied, and prompt +
``max_new_tokens`` checked against ``ctx_size``: what is admitted always fits its slot, and no
request can take room from another.

The engine also opens an HTTP listener, always: it is bound to 127.0.0.1 on a random port and
locked with a random API key that never leaves this process. This backend uses it for what the
Python API lacks: the chat template, tokenizing, the model's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx

from h2o_chat import weights
from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    GenerationRequest,
    Job,
    TokenSpan,
    context_error,
)
from h2o_chat.server.backends.llamacpp_chunks import ChunkReader, completion_body, token_spans
from h2o_chat.server.backends.llamacpp_settings import (
    DEFAULT_CTX_SIZE,
    HTTP_THREADS,
    EngineSettings,
    engine_params,
    import_engine,
)

logger = logging.getLogger("h2o_chat.server")

MAX_TOP_N_TOKENS = 5  # TGI's default max_top_n_tokens
ENGINE_TIMEOUT = 60.0  # seconds for a call to the private listener

Item = Mapping[str, Any] | BackendError | None


class _Unlogged(logging.Filter):
    """Drops log records that mention ``address``."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(self.address in str(arg) for arg in record.args or ())


class LlamaCppBackend:
    """A GGUF model run by llama.cpp in this process (``path`` None: the built-in SmolLM2)."""

    kind = "builtin"
    max_top_n_tokens = MAX_TOP_N_TOKENS

    def __init__(self, path: Path | None = None, settings: EngineSettings | None = None) -> None:
        settings = settings or EngineSettings()
        self.path = path
        self.settings = settings
        self.parallel = settings.resolved_parallel()
        self.threads = settings.resolved_threads()
        self.context_length = 0  # each slot's, once the model is loaded
        self.eos_id = 0
        self._bos_token = ""
        self._server: Any = None
        self._http: httpx.AsyncClient | None = None
        self._quiet = _Unlogged("")
        self._executor = ThreadPoolExecutor(self.parallel, thread_name_prefix="h2o-llama")

    def describe(self) -> dict[str, int]:
        """The engine's settings, for ``/healthz``."""
        return {"parallel": self.parallel, "threads": self.threads, "ctx_size": self.context_length}

    async def start(self) -> None:
        path = self.path if self.path is not None else await asyncio.to_thread(weights.ensure)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}")
        key = secrets.token_urlsafe(32)
        ctx_size = self.settings.ctx_size or DEFAULT_CTX_SIZE
        self._server = await asyncio.to_thread(self._load, path, ctx_size, key)
        address = self._server.listening_address
        self._quiet = _Unlogged(address)  # httpx would log every tokenize call at INFO
        logging.getLogger("httpx").addFilter(self._quiet)
        self._http = httpx.AsyncClient(
            base_url=address,
            headers={"Authorization": f"Bearer {key}"},
            timeout=ENGINE_TIMEOUT,
            # a kept-alive connection holds one of the listener's threads: no more than it has
            limits=httpx.Limits(max_connections=HTTP_THREADS),
        )
        props = await self._call("GET", "/props")
        (model,) = (await self._call("GET", "/v1/models"))["data"]
        meta = model["meta"]  # n_ctx: a slot's. Past the model's training it would be garbage
        self.context_length = min(int(meta["n_ctx"]), int(meta["n_ctx_train"]))
        self._bos_token = props.get("bos_token") or ""
        self.eos_id = await self._eos_id(props.get("eos_token") or "")
        logger.info(
            "loaded %s: %d slots of %d tokens, %d threads",
            path.name,
            self.parallel,
            self.context_length,
            self.threads,
        )

    def _load(self, path: Path, ctx_size: int, key: str) -> Any:
        """Start llama.cpp's server loop on ``path`` (blocks for the model load)."""
        params = engine_params(path, self.parallel, ctx_size, self.threads)
        params.api_keys = [key]
        try:
            return import_engine().Server(params)
        except RuntimeError as exc:
            raise RuntimeError(f"llama.cpp could not load {path}: {exc}") from exc

    async def _call(self, method: str, route: str, body: object = None) -> Any:
        """A request to the engine's private listener; its JSON answer."""
        assert self._http is not None, "the engine has not started"
        response = await self._http.request(method, route, json=body)
        response.raise_for_status()
        return response.json()

    async def _eos_id(self, eos_token: str) -> int:
        if not eos_token:
            return 0
        found = await self._call(
            "POST", "/tokenize", {"content": eos_token, "add_special": False, "parse_special": True}
        )
        ids = found["tokens"]
        return int(ids[0]) if len(ids) == 1 else 0

    async def tokenize(self, text: str) -> list[TokenSpan]:
        """``text`` as the model's tokens (special tokens in it parsed, as TGI's /tokenize)."""
        body = {"content": text, "add_special": True, "parse_special": True, "with_pieces": True}
        return token_spans(text, (await self._call("POST", "/tokenize", body))["tokens"])

    async def _prompt(self, request: GenerationRequest) -> list[int]:
        """The conversation in the model's chat template, as token ids, ``truncate`` applied."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        rendered = (await self._call("POST", "/apply-template", {"messages": messages}))["prompt"]
        body = {
            "content": rendered,
            "add_special": not (self._bos_token and rendered.startswith(self._bos_token)),
            "parse_special": True,
        }
        tokens: list[int] = (await self._call("POST", "/tokenize", body))["tokens"]
        if request.truncate is not None:
            tokens = tokens[-request.truncate :]
        return tokens

    async def stream(self, job: Job) -> AsyncGenerator[BackendToken, None]:
        request = job.request
        try:
            prompt = await self._prompt(request)
        except httpx.HTTPError as exc:
            raise BackendError("the model could not read the prompt") from exc
        job.prompt_tokens = len(prompt)
        need = len(prompt) + request.max_new_tokens
        if need > self.context_length:
            raise context_error(len(prompt), request.max_new_tokens, self.context_length)
        async with contextlib.aclosing(self._generate(job, prompt)) as tokens:
            async for token in tokens:
                yield token

    async def _generate(self, job: Job, prompt: list[int]) -> AsyncGenerator[BackendToken, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Item] = asyncio.Queue()

        def put(item: Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        halt = threading.Event()  # set when the consumer is gone
        body = completion_body(job.request, prompt)
        done = loop.run_in_executor(self._executor, self._run, body, job, halt, put)
        reader = ChunkReader(self.eos_id, job.request.top_n_tokens)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BackendError):
                    raise item
                for token in reader.feed(item):
                    yield token
            if reader.finish_reason is None and not job.cancel.is_set():
                raise BackendError("the engine ended the answer early", "incomplete_generation")
        finally:
            halt.set()  # the worker cancels at the engine's next chunk: within one token
            with anyio.CancelScope(shield=True):
                await done

    def _run(
        self, body: dict[str, Any], job: Job, halt: threading.Event, put: Callable[[Item], None]
    ) -> None:
        """Worker thread: one completion, its chunks handed to the event loop."""

        def on_chunk(chunk: Mapping[str, Any]) -> bool:
            # xllamacpp swallows an exception raised here and ends the stream silently
            try:
                if halt.is_set() or job.cancel.is_set():
                    return True  # cancel: llama.cpp frees the slot
                put(chunk)
                return False
            except BaseException:
                return True

        try:
            self._server.handle_completions(body, on_chunk)
        except Exception:
            logger.exception("llama.cpp generation failed")
            put(BackendError("the model failed to generate"))
        finally:
            put(None)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            logging.getLogger("httpx").removeFilter(self._quiet)
        self._executor.shutdown(wait=False)
        held, self._server = [self._server], None
        # the engine stops when its last reference goes; that joins its thread: not on the loop
        await asyncio.to_thread(held.clear)
