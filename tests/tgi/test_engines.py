"""In-process: planning's TGI defaults, and the engines' tokenizers and top tokens."""

from __future__ import annotations

import contextlib

from h2o_chat.protocol.types import StreamResponse
from h2o_chat.server import generation
from h2o_chat.server.backends.base import Backend, ChatMessage, Job, Tokenizer
from h2o_chat.server.backends.llamacpp import LlamaCppBackend
from h2o_chat.server.backends.synthetic import SyntheticBackend
from h2o_chat.server.scheduler import ModelQueue

HELLO = [ChatMessage("user", "hello there  big world")]


def test_a_request_that_sets_nothing_gets_the_defaults_it_asked_for() -> None:
    h2o = generation.plan_generation(HELLO, {}, 8192)
    tgi = generation.plan_generation(HELLO, {}, 8192, defaults=generation.TGI_DEFAULTS)
    assert h2o.request.max_new_tokens == 1024  # the 2023 provider's
    assert tgi.request.max_new_tokens == 20  # TGI v0.9's
    for plan in (h2o, tgi):  # greedy unless asked to sample
        assert plan.request.temperature is None and plan.request.seed is None
    assert (
        generation.plan_generation(
            HELLO, {}, 16, defaults=generation.TGI_DEFAULTS
        ).request.max_new_tokens
        == 16
    )


async def _answer(
    backend: Backend, **parameters: object
) -> tuple[list[StreamResponse], generation.GenerationResult]:
    plan = generation.plan_generation(
        HELLO, parameters, backend.context_length, defaults=generation.TGI_DEFAULTS
    )
    result = generation.GenerationResult(tokens=[])
    events = generation.run(backend, ModelQueue(0), Job(plan.request), plan, result)
    async with contextlib.aclosing(events):
        answer = [event async for event in events if isinstance(event, StreamResponse)]
    assert result.error is None, result.error
    return answer, result


async def test_synthetic_tokenizes_as_it_echoes() -> None:
    backend = SyntheticBackend()
    assert isinstance(backend, Tokenizer)
    spans = await backend.tokenize("hello there  big world")
    assert [(s.id, s.text, s.start, s.stop) for s in spans] == [
        (1, "hello", 0, 5),
        (2, " there", 5, 11),
        (3, "  big", 11, 16),
        (4, " world", 16, 22),
    ]
    answer, result = await _answer(backend)
    assert [e.token.id for e in answer[:-1]] == [s.id for s in spans]
    assert result.tokens == [e.token for e in answer]  # collected during generation


async def test_synthetic_top_tokens() -> None:
    answer, result = await _answer(SyntheticBackend(), top_n_tokens=3)
    assert len(result.top_tokens) == len(answer) == 5
    for event, tops in zip(answer, result.top_tokens, strict=True):
        assert tops[0].id == event.token.id
        assert [t.text for t in tops][1:] == [" alt", " alt"]
    assert result.top_tokens[-1][0].special  # the end token's own alternative
    _, plain = await _answer(SyntheticBackend())
    assert plain.top_tokens == []


async def test_builtin_tokenizer_and_top_tokens() -> None:
    smol = LlamaCppBackend()
    await smol.start()
    try:
        text = "The capital of Japan is Tokyo. 日本"
        spans = await smol.tokenize(text)
        answer, result = await _answer(smol, top_n_tokens=3, max_new_tokens=8)
    finally:
        await smol.aclose()
    assert [s.id for s in spans[:7]] == [504, 3575, 282, 3085, 314, 19081, 30]
    assert "".join(s.text for s in spans[:7]) == "The capital of Japan is Tokyo."
    assert [(s.start, s.stop) for s in spans[:2]] == [(0, 3), (3, 11)]
    assert spans[-1].stop == len(text)
    assert len(result.top_tokens) == len(answer)
    for event, tops in zip(answer, result.top_tokens, strict=True):  # greedy: the top one
        assert len(tops) == 3
        assert tops[0].id == event.token.id and tops[0].logprob == event.token.logprob
        assert [t.logprob or 0.0 for t in tops] == sorted(
            (t.logprob or 0.0 for t in tops), reverse=True
        )
