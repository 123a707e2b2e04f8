"""From a backend's tokens to the protocol's events, with TGI's semantics.

Stop sequences, ``max_new_tokens``, the final event (``generated_text``, ``details``, the
``<|endoftext|>`` end token) and every failure as an :class:`ErrorEvent` live here once, for
the H2o stream and the OpenAI front door alike.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from h2o_chat.errors import InvalidRequestError
from h2o_chat.protocol.parameters import DEFAULT_PARAMETERS
from h2o_chat.protocol.types import (
    END_OF_TEXT,
    Details,
    ErrorEvent,
    FinishReason,
    StreamResponse,
    Token,
)
from h2o_chat.server.backends.base import (
    Backend,
    BackendError,
    BackendToken,
    ChatMessage,
    GenerationRequest,
    Job,
)
from h2o_chat.server.scheduler import ModelQueue, Overloaded

logger = logging.getLogger("h2o_chat.server")

END_TOKEN_ID = 0  # for an end token the backend did not name (an upstream's)
OVERLOADED_MESSAGE = "Model is overloaded"


@dataclass(frozen=True, slots=True)
class PlanDefaults:
    """What a request that sets nothing gets (sampling is off unless asked, in both)."""

    max_new_tokens: int
    token_details: bool = True  # the route shows each token's id and logprob


# The H2o routes (and /v1) keep the 2023 provider's default; TGI's own routes answer as TGI
# v0.9 did (router/src/lib.rs, default_max_new_tokens).
H2O_DEFAULTS = PlanDefaults(max_new_tokens=DEFAULT_PARAMETERS["max_new_tokens"])
TGI_DEFAULTS = PlanDefaults(max_new_tokens=20)
# The OpenAI route shows text only: an upstream need not compute each token's logprob.
OPENAI_DEFAULTS = PlanDefaults(DEFAULT_PARAMETERS["max_new_tokens"], token_details=False)


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    """A generation as the protocol asked for it."""

    request: GenerationRequest
    stop: tuple[str, ...] = ()
    details: bool = False
    prefix: str = ""  # put before generated_text (return_full_text)


def plan_generation(
    messages: Sequence[ChatMessage],
    parameters: Mapping[str, Any],
    context_length: int,
    *,
    defaults: PlanDefaults = H2O_DEFAULTS,
    prefix: str = "",
) -> GenerationPlan:
    """The plan for validated TGI ``parameters``; raises :class:`InvalidRequestError`.

    As TGI does, sampling is on when ``do_sample`` is true, or when it is absent and a
    warper (temperature, top_k, top_p, typical_p) is set; ``do_sample: false`` is greedy.
    ``defaults`` fill in what the request leaves out. ``top_n_tokens``, which the TGI routes
    add once they have checked it against the engine, asks for each token's alternatives.
    """
    max_new_tokens = parameters.get("max_new_tokens", min(defaults.max_new_tokens, context_length))
    truncate = parameters.get("truncate")
    for name, value in (("max_new_tokens", max_new_tokens), ("truncate", truncate)):
        if value is not None and value > context_length:
            raise InvalidRequestError(
                f"parameter {name!r} is {value}, over the model's context of {context_length}"
            )
    if parameters.get("best_of", 1) > 1:
        raise InvalidRequestError("parameter 'best_of' above 1 is not supported")
    temperature = parameters.get("temperature", 1.0)
    warped = (
        temperature != 1.0
        or "top_k" in parameters
        or parameters.get("top_p", 1.0) < 1.0
        or parameters.get("typical_p", 1.0) < 1.0
    )
    sample = parameters.get("do_sample", warped)
    seed = parameters.get("seed", secrets.randbelow(2**32)) if sample else None
    request = GenerationRequest(
        messages=tuple(messages),
        max_new_tokens=max_new_tokens,
        temperature=temperature if sample else None,
        top_k=parameters.get("top_k"),
        top_p=parameters.get("top_p"),
        typical_p=parameters.get("typical_p"),
        repetition_penalty=parameters.get("repetition_penalty"),
        truncate=truncate,
        seed=seed,
        top_n_tokens=parameters.get("top_n_tokens", 0),
        token_details=defaults.token_details,
    )
    return GenerationPlan(
        request, tuple(parameters.get("stop", ())), bool(parameters.get("details")), prefix
    )


@dataclass(slots=True)
class GenerationResult:
    """How a generation went: its text, token count, finish reason or error."""

    parts: list[str] = field(default_factory=list)  # the generated text, special tokens left out
    length: int = 0  # characters in ``parts``
    tail: str = ""  # the end of the text, as much as finding a stop sequence needs
    generated_tokens: int = 0  # TGI's count: the end token included
    finish_reason: FinishReason | None = None  # None: stopped early or failed
    answer_end: int | None = None  # where a stop sequence begins in ``text``
    error: ErrorEvent | None = None
    tokens: list[Token] | None = None  # every token's event token, when a list is given
    top_tokens: list[list[Token]] = field(default_factory=list)  # per token, when asked

    @property
    def text(self) -> str:
        """The generated text (special tokens left out)."""
        return "".join(self.parts)

    @property
    def answer(self) -> str:
        """The text to keep: up to the stop sequence, if one matched."""
        return self.text[: self.answer_end]

    @property
    def completion_tokens(self) -> int:
        """Tokens of the answer, without the end token."""
        return self.generated_tokens - (self.finish_reason == "eos_token")

    def add(self, text: str, stops: Sequence[str]) -> None:
        """Append generated ``text``; mark where a stop sequence it completes begins."""
        self.parts.append(text)
        self.length += len(text)
        if not stops or not text:
            return
        self.tail = (self.tail + text)[-(len(text) + max(map(len, stops)) - 1) :]
        stop_at = _find_stop(self.tail, len(text), stops)
        if stop_at is not None:
            self.answer_end = self.length - len(self.tail) + stop_at
            self.finish_reason = "stop_sequence"


def _find_stop(text: str, added: int, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence that overlaps the last ``added`` characters begins."""
    found = None
    for stop in stops:
        start = max(0, len(text) - added - len(stop) + 1)
        index = text.find(stop, start)
        if index != -1 and (found is None or index < found):
            found = index
    return found


async def run(
    backend: Backend, queue: ModelQueue, job: Job, plan: GenerationPlan, result: GenerationResult
) -> AsyncGenerator[StreamResponse | ErrorEvent, None]:
    """Wait for the model, generate, and yield the events; ``result`` records the result.

    Ends early, without a final event, when ``job.cancel`` is set (stop-generating).
    """
    try:
        async with queue.slot(job.stopped) as held:
            if not held or job.cancel.is_set():
                return
            async with contextlib.aclosing(backend.stream(job)) as pieces:
                async for piece in pieces:
                    event = _step(piece, plan, result)
                    yield event
                    if event.is_final or job.cancel.is_set():
                        return
            if not job.cancel.is_set():  # the backend ended on its own without an end token
                yield _limit_reached(plan, result)
    except Overloaded:
        result.error = ErrorEvent(OVERLOADED_MESSAGE, "overloaded")
        yield result.error
    except BackendError as exc:
        result.error = ErrorEvent(exc.message, exc.error_type)
        yield result.error
    except Exception:
        logger.exception("generation failed")
        result.error = ErrorEvent("generation failed", "generation")
        yield result.error


def _step(piece: BackendToken, plan: GenerationPlan, result: GenerationResult) -> StreamResponse:
    """The event for one backend token, final when the answer ends with it."""
    result.generated_tokens += 1
    if piece.eos:
        token = Token(piece.id, END_OF_TEXT, piece.logprob, special=True)
        result.finish_reason = "eos_token"
    else:
        token = Token(piece.id, piece.text, piece.logprob, special=piece.special)
        result.add("" if piece.special else piece.text, plan.stop)
        if result.finish_reason is None and (
            result.generated_tokens >= plan.request.max_new_tokens
        ):
            result.finish_reason = "length"
    if result.tokens is not None:
        result.tokens.append(token)
    if plan.request.top_n_tokens:
        result.top_tokens.append([_token(top) for top in piece.top_tokens])
    if result.finish_reason is None:
        return StreamResponse(token)
    return _final(token, plan, result)


def _token(piece: BackendToken) -> Token:
    """An alternative token as the protocol shows it (an end token is special)."""
    return Token(piece.id, piece.text, piece.logprob, special=piece.eos or piece.special)


def _limit_reached(plan: GenerationPlan, result: GenerationResult) -> StreamResponse:
    """The final event when the backend stopped without its end token: it hit a limit
    (an upstream's ``length``). The end token closes the stream but is not counted."""
    result.finish_reason = "length"
    return _final(Token(END_TOKEN_ID, END_OF_TEXT, None, special=True), plan, result)


def _final(token: Token, plan: GenerationPlan, result: GenerationResult) -> StreamResponse:
    details = None
    if plan.details and result.finish_reason is not None:
        details = Details(result.finish_reason, result.generated_tokens, plan.request.seed)
    return StreamResponse(token, plan.prefix + result.text, details)
