"""``h2o_chat.server.generation`` in-process: the plan, the stop-sequence search, ``run``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS
from h2o_chat.protocol.types import END_OF_TEXT, Details, ErrorEvent, StreamResponse, Token
from h2o_chat.server.backends.base import (
    Backend,
    BackendError,
    BackendToken,
    ChatMessage,
    GenerationRequest,
    Job,
)
from h2o_chat.server.backends.synthetic import SyntheticBackend
from h2o_chat.server.generation import (
    END_TOKEN_ID,
    OVERLOADED_MESSAGE,
    GenerationPlan,
    GenerationResult,
    _find_stop,
    plan_generation,
    run,
)
from h2o_chat.server.scheduler import ModelQueue
from tests.support.backends import Scripted
from tests.support.loop import until

MESSAGES = (ChatMessage("system", "be brief"), ChatMessage("user", "hi"))
CONTEXT = 8192

# -- plan_generation: TGI's parameters as a request ------------------------------------------


def plan(parameters: Mapping[str, Any], context_length: int = CONTEXT) -> GenerationPlan:
    return plan_generation(MESSAGES, parameters, context_length)


def test_no_parameters_is_greedy_with_the_seed_length() -> None:
    assert plan({}) == GenerationPlan(
        GenerationRequest(MESSAGES, max_new_tokens=DEFAULT_PARAMETERS["max_new_tokens"])
    )


def test_the_default_length_fits_a_small_context() -> None:
    assert plan({}, context_length=100).request.max_new_tokens == 100


@pytest.mark.parametrize(
    "warper", [{"temperature": 0.5}, {"top_k": 1}, {"top_p": 0.9}, {"typical_p": 0.9}], ids=str
)
def test_a_warper_without_do_sample_samples(warper: dict[str, Any]) -> None:
    request = plan(warper).request
    assert request.temperature == warper.get("temperature", 1.0)
    assert request.seed is not None and 0 <= request.seed < 2**32


@pytest.mark.parametrize(
    "neutral",
    [{"temperature": 1.0}, {"top_p": 1.0}, {"typical_p": 1.0}, {"repetition_penalty": 1.3}],
    ids=str,
)
def test_parameters_that_warp_nothing_stay_greedy(neutral: dict[str, Any]) -> None:
    request = plan(neutral).request
    assert (request.temperature, request.seed) == (None, None)


def test_do_sample_alone_samples_at_temperature_1() -> None:
    request = plan({"do_sample": True}).request
    assert request.temperature == 1.0
    assert request.seed is not None


def test_do_sample_false_is_greedy_whatever_the_warpers() -> None:
    warpers = {"temperature": 0.5, "top_k": 5, "top_p": 0.9, "typical_p": 0.8, "seed": 3}
    request = plan({"do_sample": False, **warpers}).request
    assert (request.temperature, request.seed) == (None, None)
    assert (request.top_k, request.top_p, request.typical_p) == (5, 0.9, 0.8)  # passed on


def test_the_seed_is_kept_only_when_sampling() -> None:
    assert plan({"temperature": 0.5, "seed": 7}).request.seed == 7
    assert plan({"seed": 7}).request.seed is None


def test_every_parameter_reaches_the_plan() -> None:
    parameters = {
        "temperature": 0.7,
        "top_k": 20,
        "top_p": 0.9,
        "typical_p": 0.95,
        "repetition_penalty": 1.1,
        "truncate": 60,
        "max_new_tokens": 5,
        "seed": 42,
        "stop": ["\n", "User:"],
        "details": True,
    }
    messages = list(MESSAGES)
    planned = plan_generation(messages, parameters, CONTEXT, prefix="hi")
    messages.append(ChatMessage("user", "added later"))
    assert planned == GenerationPlan(
        GenerationRequest(
            MESSAGES,
            max_new_tokens=5,
            temperature=0.7,
            top_k=20,
            top_p=0.9,
            typical_p=0.95,
            repetition_penalty=1.1,
            truncate=60,
            seed=42,
        ),
        stop=("\n", "User:"),
        details=True,
        prefix="hi",
    )


@pytest.mark.parametrize("name", ["max_new_tokens", "truncate"])
def test_a_length_over_the_context_is_refused(name: str) -> None:
    assert getattr(plan({name: CONTEXT}).request, name) == CONTEXT  # up to the context is fine
    with pytest.raises(InvalidRequestError) as caught:
        plan({name: CONTEXT + 1})
    assert str(caught.value) == (
        f"parameter {name!r} is {CONTEXT + 1}, over the model's context of {CONTEXT}"
    )


def test_best_of_above_1_is_refused() -> None:
    assert plan({"best_of": 1}) == plan({})
    with pytest.raises(InvalidRequestError, match="'best_of' above 1 is not supported"):
        plan({"best_of": 2})


# -- the stop-sequence search -----------------------------------------------------------------


def feed(tokens: Sequence[str], stops: Sequence[str]) -> tuple[GenerationResult, int]:
    """Add tokens as ``run`` does, until one completes a stop; the result and tokens used."""
    result = GenerationResult()
    for used, token in enumerate(tokens, 1):
        result.add(token, stops)
        if result.finish_reason is not None:
            return result, used
    return result, len(tokens)


STOP_CASES = [
    # (tokens, stops, answer, tokens used)
    (["Hello world"], ["o w"], "Hell", 1),
    (["Hel", "lo"], ["ll"], "He", 2),
    (["a", "b", "c", "d"], ["bcd"], "a", 4),
    (["hello ", "wor", "ld", "!"], ["o world"], "hell", 3),
    (["xyz"], ["z", "y"], "x", 1),
    (["xa", "bc"], ["bc", "abc"], "x", 2),
    (["ab", "c", "d"], ["abcd", "c"], "ab", 2),
    (["a", "a", "a", "b"], ["aab"], "a", 4),
    (["ab", "ab", "ab", "c"], ["ababc"], "ab", 4),
    (["", "a", "", "b"], ["ab"], "", 4),
]


@pytest.mark.parametrize(("tokens", "stops", "answer", "used"), STOP_CASES)
def test_a_stop_sequence_ends_the_answer_where_it_begins(
    tokens: list[str], stops: list[str], answer: str, used: int
) -> None:
    result, consumed = feed(tokens, stops)
    assert (result.answer, consumed, result.finish_reason) == (answer, used, "stop_sequence")
    assert result.text == "".join(tokens[:used])  # the text keeps the stop sequence


def test_without_a_match_the_answer_is_the_whole_text() -> None:
    for stops in ([], ["x"], ["ca"]):
        result, _ = feed(["ab", "c"], stops)
        assert (result.answer, result.finish_reason, result.answer_end) == ("abc", None, None)


def test_the_position_counts_the_text_before_the_tail() -> None:
    result, used = feed(["x" * 1000, "ab", "c"], ["abc", "zz"])
    assert (result.answer_end, used) == (1000, 3)
    assert len(result.tail) <= len("c") + len("abc") - 1  # only what a search needs is kept


def test_find_stop_looks_only_at_stops_that_reach_the_added_text() -> None:
    assert _find_stop("stop and more", 4, ["stop"]) is None  # wholly before the added text
    assert _find_stop("xxstop", 1, ["stop"]) == 2
    assert _find_stop("xxstop", 1, ["top", "stop"]) == 2  # the earliest, not the first listed


def reference(tokens: Sequence[str], stops: Sequence[str]) -> tuple[int | None, int]:
    """Where the answer ends and how many tokens it takes, by searching the whole text."""
    text = ""
    for used, token in enumerate(tokens, 1):
        text += token
        starts = [i for stop in stops if (i := text.find(stop)) != -1]
        if starts:
            return min(starts), used
    return None, len(tokens)


@settings(max_examples=400, deadline=None)
@given(
    tokens=st.lists(st.text("ab\n", max_size=4), max_size=12),
    stops=st.lists(st.text("ab\n", min_size=1, max_size=5), min_size=1, max_size=4),
)
def test_the_search_agrees_with_a_search_of_the_whole_text(
    tokens: list[str], stops: list[str]
) -> None:
    result, used = feed(tokens, stops)
    assert (result.answer_end, used) == reference(tokens, stops)


# -- run: a backend's tokens as the protocol's events ----------------------------------------


def tokens(*texts: str, eos: bool = True) -> list[BackendToken]:
    """Tokens with ids 1, 2, ... and logprob -0.5; then the end token (id 0) if ``eos``."""
    pieces = [BackendToken(i, text, -0.5) for i, text in enumerate(texts, 1)]
    return [*pieces, BackendToken(0, "", -0.1, eos=True)] if eos else pieces


async def generate(
    backend: Backend,
    parameters: Mapping[str, Any],
    *,
    queue: ModelQueue | None = None,
    prefix: str = "",
) -> tuple[list[StreamResponse | ErrorEvent], GenerationResult]:
    planned = plan_generation(MESSAGES, parameters, CONTEXT, prefix=prefix)
    result = GenerationResult()
    job = Job(planned.request)
    events = [e async for e in run(backend, queue or ModelQueue(1), job, planned, result)]
    return events, result


def texts(events: Sequence[StreamResponse | ErrorEvent]) -> list[str]:
    return [e.token.text for e in events if isinstance(e, StreamResponse)]


async def test_the_end_token_ends_the_answer() -> None:
    events, result = await generate(Scripted(tokens("Hel", "lo")), {"details": True})
    assert events == [
        StreamResponse(Token(1, "Hel", -0.5)),
        StreamResponse(Token(2, "lo", -0.5)),
        StreamResponse(Token(0, END_OF_TEXT, -0.1, special=True), "Hello", Details("eos_token", 3)),
    ]
    assert (result.answer, result.generated_tokens, result.completion_tokens) == ("Hello", 3, 2)


async def test_max_new_tokens_ends_the_answer_without_pulling_more() -> None:
    backend = Scripted(tokens("a", " b", " c", " d"))
    events, result = await generate(backend, {"max_new_tokens": 2, "details": True})
    assert texts(events) == ["a", " b"]
    assert events[-1] == StreamResponse(Token(2, " b", -0.5), "a b", Details("length", 2))
    assert (backend.pulled, backend.ended) == (2, "closed")
    assert result.completion_tokens == 2


async def test_a_backend_that_ends_without_its_end_token_hit_a_limit() -> None:
    events, result = await generate(Scripted(tokens("a", " b", eos=False)), {"details": True})
    assert events[-1] == StreamResponse(
        Token(END_TOKEN_ID, END_OF_TEXT, None, special=True), "a b", Details("length", 2)
    )
    assert (result.finish_reason, result.completion_tokens) == ("length", 2)


async def test_a_stop_sequence_split_across_tokens_ends_the_answer() -> None:
    backend = Scripted(tokens("The", " end", " is", " near", " now"))
    events, result = await generate(backend, {"stop": [" is n"], "details": True})
    assert texts(events) == ["The", " end", " is", " near"]
    final = events[-1]
    assert isinstance(final, StreamResponse)
    assert final.generated_text == "The end is near"  # TGI: the text keeps the stop sequence
    assert final.details == Details("stop_sequence", 4)
    assert result.answer == "The end"  # what is saved and what the OpenAI door sends
    assert (backend.pulled, backend.ended) == (4, "closed")


async def test_full_text_and_sampling_seed_in_the_final_event() -> None:
    parameters = {"temperature": 0.5, "seed": 11, "details": True, "return_full_text": True}
    events, _ = await generate(Scripted(tokens(" there")), parameters, prefix="hi")
    final = events[-1]
    assert isinstance(final, StreamResponse)
    assert (final.generated_text, final.details) == ("hi there", Details("eos_token", 2, 11))


async def test_without_details_the_final_event_has_none() -> None:
    events, _ = await generate(Scripted(tokens("a")), {})
    assert isinstance(events[-1], StreamResponse) and events[-1].details is None


async def test_a_backend_error_is_an_error_event_after_the_tokens() -> None:
    failure = BackendError("the upstream timed out", "incomplete_generation")
    backend = Scripted(tokens("a", " b", eos=False), error=failure)
    events, result = await generate(backend, {})
    assert texts(events) == ["a", " b"]
    assert events[-1] == ErrorEvent("the upstream timed out", "incomplete_generation")
    assert result.error == events[-1]
    assert result.finish_reason is None


async def test_a_prompt_over_the_context_is_a_validation_event() -> None:
    events, result = await generate(SyntheticBackend(), {"max_new_tokens": CONTEXT})
    (event,) = events
    assert isinstance(event, ErrorEvent) and result.error == event
    assert event.error_type == "validation"
    assert event.error.startswith(f"`inputs` tokens + `max_new_tokens` must be <= {CONTEXT}.")


async def test_an_unexpected_exception_is_a_generic_error_event_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = Scripted(tokens("a", eos=False), error=RuntimeError("boom at /secret/model.bin"))
    with caplog.at_level(logging.ERROR, logger="h2o_chat.server"):
        events, _ = await generate(backend, {})
    assert events[-1] == ErrorEvent("generation failed", "generation")
    (record,) = caplog.records
    assert record.exc_info is not None and "boom at /secret" in str(record.exc_info[1])


async def test_a_full_queue_is_an_overloaded_event_before_any_token() -> None:
    queue, holder = ModelQueue(size=0), asyncio.Event()
    backend = Scripted(tokens("a"))
    async with queue.slot(holder):
        events, result = await generate(backend, {}, queue=queue)
    assert events == [ErrorEvent(OVERLOADED_MESSAGE, "overloaded")]
    assert result.error == events[0]
    assert backend.pulled == 0


async def test_a_job_stopped_before_its_turn_generates_nothing() -> None:
    backend = Scripted(tokens("a"))
    planned = plan({})
    job = Job(planned.request)
    job.stop()
    events = [e async for e in run(backend, ModelQueue(1), job, planned, GenerationResult())]
    assert events == []
    assert backend.pulled == 0


async def test_a_job_stopped_mid_answer_ends_without_a_final_event() -> None:
    backend = Scripted(tokens("a", " b", " c"))
    planned, result = plan({}), GenerationResult()
    job = Job(planned.request)
    events = []
    async for event in run(backend, ModelQueue(1), job, planned, result):
        events.append(event)
        job.stop()  # stop-generating, as the token is delivered
    assert texts(events) == ["a"]
    assert (result.answer, result.finish_reason, result.error) == ("a", None, None)
    assert (backend.pulled, backend.ended) == (1, "closed")


async def test_a_job_stopped_while_waiting_leaves_the_queue() -> None:
    queue, holder = ModelQueue(size=1), asyncio.Event()
    backend = Scripted(tokens("a"))
    planned = plan({})
    job = Job(planned.request)

    async def waiting() -> list[StreamResponse | ErrorEvent]:
        return [e async for e in run(backend, queue, job, planned, GenerationResult())]

    async with queue.slot(holder):
        task = asyncio.create_task(waiting())
        await until(lambda: queue.waiting == 1, "the job waiting in the queue")
        job.stop()
        assert await task == []
        assert queue.waiting == 0
    assert backend.pulled == 0
