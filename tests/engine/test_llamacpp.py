"""The in-process engine (llama.cpp from the xllamacpp wheel) on SmolLM2, called directly.

Several answers generate at once in their slots; one is cancelled without touching the others;
finish reasons, seeds, truncation, the chat template, tokens and their alternatives come out
as they did from the engine before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from h2o_chat.server import generation
from h2o_chat.server.backends.base import (
    BackendError,
    BackendToken,
    ChatMessage,
    GenerationRequest,
    Job,
    Tokenizer,
)
from h2o_chat.server.backends.llamacpp import LlamaCppBackend
from h2o_chat.server.backends.llamacpp_settings import EngineSettings
from h2o_chat.server.scheduler import ModelQueue

pytestmark = pytest.mark.asyncio(loop_scope="module")

SLOTS = 4
CTX_SIZE = 512
JAPAN = "What is the capital of Japan?"
SUBJECTS = ("cats", "the sea", "a red car", "winter")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[LlamaCppBackend]:
    backend = LlamaCppBackend(None, EngineSettings(parallel=SLOTS, ctx_size=CTX_SIZE))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


def ask(text: str, max_new_tokens: int = 32, **fields: Any) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", text),), max_new_tokens, **fields)


def story(subject: str, max_new_tokens: int = 24, **fields: Any) -> GenerationRequest:
    return ask(f"Write a story about {subject}.", max_new_tokens, **fields)


async def tokens(
    engine: LlamaCppBackend, request: GenerationRequest, log: list[int] | None = None, tag: int = 0
) -> list[BackendToken]:
    """The tokens of one answer; ``log`` records ``tag`` as each arrives."""
    out = []
    async with contextlib.aclosing(engine.stream(Job(request))) as stream:
        async for token in stream:
            out.append(token)
            if log is not None:
                log.append(tag)
    return out


def ids(answer: list[BackendToken]) -> list[int]:
    return [token.id for token in answer]


async def test_loaded_with_its_settings(engine: LlamaCppBackend) -> None:
    assert (engine.kind, engine.parallel, engine.context_length) == ("builtin", SLOTS, CTX_SIZE)
    assert engine.max_top_n_tokens >= 1
    assert engine.describe() == {"parallel": SLOTS, "threads": engine.threads, "ctx_size": CTX_SIZE}


async def test_greedy_answer_ends_with_the_models_end_token(engine: LlamaCppBackend) -> None:
    job = Job(ask(JAPAN, 40))
    answer = [token async for token in engine.stream(job)]
    assert "".join(t.text for t in answer).startswith("The capital of Japan is Tokyo.")
    end = answer[-1]
    assert end.eos and end.id == engine.eos_id == 2  # <|im_end|>, SmolLM2's end of sequence
    assert end.logprob is not None and end.logprob < 0
    assert not any(t.eos for t in answer[:-1])
    assert all(t.id > 2 and t.logprob is not None and t.logprob <= 0 for t in answer[:-1])
    assert job.prompt_tokens == 37  # the GGUF's chat template, its default system prompt


async def test_streams_generate_together(engine: LlamaCppBackend) -> None:
    """Four answers at once in four slots: their tokens interleave as they arrive."""
    log: list[int] = []
    answers = await asyncio.gather(
        *(tokens(engine, story(s), log, tag) for tag, s in enumerate(SUBJECTS))
    )
    assert all(len(answer) >= 8 for answer in answers)
    first = {tag: log.index(tag) for tag in range(SLOTS)}
    last = {tag: len(log) - 1 - log[::-1].index(tag) for tag in range(SLOTS)}
    for tag in range(SLOTS):  # every answer started before every other one ended
        assert all(first[tag] < last[other] for other in range(SLOTS) if other != tag)


async def test_answers_do_not_depend_on_what_runs_beside_them(engine: LlamaCppBackend) -> None:
    """Greedy and seeded answers are the same alone and in a batch (a KV cache per slot)."""
    requests = [story(SUBJECTS[0]), story(SUBJECTS[1], temperature=0.9, seed=7)]
    alone = [ids(await tokens(engine, request)) for request in requests]
    together = await asyncio.gather(*(tokens(engine, r) for r in requests * 2))
    assert [ids(answer) for answer in together] == alone * 2


async def test_the_same_seed_gives_the_same_answer(engine: LlamaCppBackend) -> None:
    sampled = story(SUBJECTS[2], 32, temperature=1.0, top_k=50, top_p=0.95, seed=42)
    first, second = [ids(await tokens(engine, sampled)) for _ in range(2)]
    other = ids(await tokens(engine, story(SUBJECTS[2], 32, temperature=1.0, seed=43)))
    assert first == second
    assert other != first


async def test_cancel_frees_its_slot_and_leaves_the_others_intact(
    engine: LlamaCppBackend,
) -> None:
    """Four long answers fill the slots; one is stopped after 3 tokens. It ends within one
    token, a fifth answer gets its slot and finishes while the others still run, and the
    others are token for token what they are alone."""
    long = [story(s, 96) for s in SUBJECTS]
    alone = [ids(await tokens(engine, request)) for request in long[1:]]
    log: list[int] = []
    victim = Job(long[0])
    after_stop: list[BackendToken] = []

    async def cancelled() -> int:
        count = 0
        async with contextlib.aclosing(engine.stream(victim)) as stream:
            async for token in stream:
                count += 1
                if victim.cancel.is_set():
                    after_stop.append(token)
                if count == 3:
                    victim.stop()
                    log.append(-1)
        return count

    async def fifth() -> list[BackendToken]:
        while -1 not in log:
            await asyncio.sleep(0.01)
        return await tokens(engine, ask(JAPAN, 40), log, 99)

    survivors = [tokens(engine, request, log, tag) for tag, request in enumerate(long[1:], 1)]
    count, replacement, answers = await asyncio.gather(
        cancelled(), fifth(), asyncio.gather(*survivors)
    )
    assert count <= 4 and len(after_stop) <= 1
    assert [ids(answer) for answer in answers] == alone
    assert replacement[-1].eos
    finished_fifth = len(log) - 1 - log[::-1].index(99)
    assert any(tag in log[finished_fifth:] for tag in (1, 2, 3)), "the others should still run"


async def test_finish_reasons(engine: LlamaCppBackend) -> None:
    """Through generation.run: the end token, a stop sequence, and the length limit."""

    async def finish(request: GenerationRequest, stop: tuple[str, ...] = ()) -> str | None:
        plan = generation.GenerationPlan(request, stop, details=True)
        result = generation.GenerationResult()
        queue = ModelQueue(0, engine.parallel)
        events = generation.run(engine, queue, Job(request), plan, result)
        async with contextlib.aclosing(events) as stream:
            async for _ in stream:
                pass
        assert result.error is None, result.error
        return result.finish_reason

    assert await finish(ask(JAPAN, 40)) == "eos_token"
    assert await finish(ask(JAPAN, 40), stop=("Japan",)) == "stop_sequence"
    assert await finish(ask(JAPAN, 3)) == "length"


async def test_truncate_keeps_the_last_prompt_tokens(engine: LlamaCppBackend) -> None:
    job = Job(ask("Please ignore this. " * 400 + JAPAN, 4, truncate=60))
    answer = [token async for token in engine.stream(job)]
    assert job.prompt_tokens == 60 and len(answer) == 4


async def test_over_the_slot_is_tgis_validation_error(engine: LlamaCppBackend) -> None:
    job = Job(ask(JAPAN, CTX_SIZE))
    with pytest.raises(BackendError) as raised:
        await tokens(engine, job.request)
    assert raised.value.error_type == "validation"
    assert raised.value.message == (
        f"`inputs` tokens + `max_new_tokens` must be <= {CTX_SIZE}. "
        f"Given: 37 `inputs` tokens and {CTX_SIZE} `max_new_tokens`"
    )


async def test_sampling_parameters_are_accepted(engine: LlamaCppBackend) -> None:
    request = story(
        SUBJECTS[3], 8, temperature=0.7, top_k=10, top_p=0.9, typical_p=0.9, repetition_penalty=1.3
    )
    assert len(await tokens(engine, request, None)) == 8


async def test_top_tokens_are_the_most_likely_alternatives(engine: LlamaCppBackend) -> None:
    answer = await tokens(engine, ask(JAPAN, 6, top_n_tokens=3))
    for token in answer:
        assert len(token.top_tokens) == 3
        logprobs = [t.logprob or 0.0 for t in token.top_tokens]
        assert logprobs == sorted(logprobs, reverse=True)
        assert token.logprob is not None and logprobs[0] >= token.logprob
    assert answer[0].top_tokens[0].text == "The"


async def test_tokenize(engine: LlamaCppBackend) -> None:
    assert isinstance(engine, Tokenizer)
    spans = await engine.tokenize("The capital<|im_end|>")
    assert [(s.id, s.text, s.start, s.stop) for s in spans] == [
        (504, "The", 0, 3),
        (3575, " capital", 3, 11),
        (2, "<|im_end|>", 11, 21),
    ]


async def test_the_engines_own_listener_is_loopback_and_locked(engine: LlamaCppBackend) -> None:
    address = engine._server.listening_address
    assert address.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=address) as http:
        for route in ("/props", "/slots", "/v1/models"):
            assert (await http.get(route)).status_code == 401
        wrong = {"Authorization": "Bearer guess"}
        assert (
            await http.post("/completion", json={"prompt": "x"}, headers=wrong)
        ).status_code == 401
