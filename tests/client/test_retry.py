"""The retry policy and Retry-After parsing, pure; then the client's retries, in-process."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time

import httpx
import pytest

from h2o_chat import RetryPolicy, errors
from h2o_chat.client._retry import parse_retry_after
from tests.support.client import FakeServer

QUICK = RetryPolicy(backoff=0.001, max_backoff=0.002)
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _status(status: int, retry_after: float | None = None) -> errors.HTTPStatusError:
    return errors.HTTPStatusError("planned", status_code=status, retry_after=retry_after)


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # milliseconds first
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),  # garbage: the next header
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),  # a literal infinity says nothing
        ({"retry-after": "1e999"}, float("inf")),  # an overflowing number says "long"
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": _http_date(-60)}, 0.0),
    ],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == seconds


def test_retry_after_as_an_http_date() -> None:
    seconds = parse_retry_after(httpx.Headers({"Retry-After": _http_date(100)}))
    assert seconds is not None and 98 <= seconds <= 100


def test_only_retryable_failures_are_retried() -> None:
    policy = RetryPolicy()
    for error in [
        errors.ConnectError("refused"),
        errors.TimeoutException("read timeout"),
        errors.TransportError("connection broken before the answer"),
        *(_status(status) for status in (429, 502, 503, 504)),
    ]:
        assert policy.decide(0, error).delay is not None, error
    for error in [
        errors.StreamClosedError("closed mid-answer"),
        errors.GenerationError("boom", error_type="generation"),
        errors.ProtocolError("not the protocol"),
        *(_status(status) for status in (400, 401, 404, 500, 501)),
    ]:
        decision = policy.decide(0, error)
        assert decision.delay is None and "not retried" in decision.reason, error


def test_backoff_doubles_to_the_cap_keeping_most_of_the_delay() -> None:
    policy = RetryPolicy(max_retries=2000)
    for attempt, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (1999, 8.0)]:
        delays = [policy.decide(attempt, _status(503)).delay for _ in range(50)]
        assert all(d is not None and 0.75 * full <= d <= full for d in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jittered
    assert policy.decide(0, _status(503)).reason == "backoff"


def test_no_retry_once_the_retries_are_spent() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.decide(1, _status(503)).delay is not None
    decision = policy.decide(2, _status(503))
    assert decision.delay is None and decision.reason == "no retries left of 2"
    assert RetryPolicy(max_retries=0).decide(0, errors.ConnectError("x")).delay is None


def test_retry_after_within_the_cap_is_the_wait() -> None:
    policy = RetryPolicy(max_retry_after=30)
    decision = policy.decide(0, _status(429, retry_after=30))
    assert (decision.delay, decision.reason) == (30, "as Retry-After asked")
    assert policy.decide(0, _status(503, retry_after=0.25)).delay == 0.25
    # A zero wait (or a date already past) backs off instead of hammering the server.
    assert policy.decide(0, _status(503, retry_after=0.0)).reason == "backoff"


def test_retry_after_over_the_cap_raises_even_with_retries_left() -> None:
    decision = RetryPolicy(max_retry_after=30).decide(0, _status(429, retry_after=31))
    assert decision.delay is None
    assert decision.reason == "Retry-After 31s is over the 30s cap"
    assert RetryPolicy().decide(0, _status(429, retry_after=float("inf"))).delay is None


def test_a_negative_max_retries_is_refused() -> None:
    with pytest.raises(errors.InvalidRequestError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(errors.InvalidRequestError, match="max_retries"):
        FakeServer().client(max_retries=-1)


def test_client_retries_as_retry_after_asks_and_logs_each_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeServer([httpx.Response(503, headers={"retry-after-ms": "10"})])
    caplog.set_level(logging.INFO, logger="h2o_chat")
    with fake.client() as client:
        assert client.chat("falcon-7b", MESSAGES).text == "Hello wide world"
    assert fake.answer_requests == 2
    [record] = [r for r in caplog.records if r.name == "h2o_chat" and "retry" in r.message]
    assert record.levelno == logging.INFO
    assert record.message.startswith("retry 1/2 of POST /conversation/c1 in 0.01s")
    assert "(as Retry-After asked): HTTP 503" in record.message


def test_client_raises_a_retry_after_over_the_cap_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeServer([httpx.Response(429, headers={"retry-after": "120"})])
    caplog.set_level(logging.INFO, logger="h2o_chat")
    with fake.client() as client, pytest.raises(errors.RateLimitError) as caught:
        client.chat("falcon-7b", MESSAGES)
    assert caught.value.retry_after == 120
    assert fake.answer_requests == 1
    assert "no retry of POST /conversation/c1 (Retry-After 120s is over the 30s cap)" in (
        caplog.text
    )


def test_a_transport_failure_before_the_answer_backs_off_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    fake = FakeServer([broken])
    caplog.set_level(logging.INFO, logger="h2o_chat")
    with fake.client(retry=QUICK) as client:
        assert client.chat("falcon-7b", MESSAGES).text == "Hello wide world"
    assert fake.answer_requests == 2
    assert "(backoff): connection broken before the answer" in caplog.text


def test_a_transport_failure_before_the_answer_is_not_a_closed_stream() -> None:
    fake = FakeServer([httpx.ReadError("connection reset")])
    with fake.client(max_retries=0) as client, pytest.raises(errors.TransportError) as caught:
        client.chat("falcon-7b", MESSAGES)
    assert type(caught.value) is errors.TransportError
    assert isinstance(caught.value.__cause__, httpx.ReadError)


def test_max_retries_overrides_the_policy_it_is_given() -> None:
    fake = FakeServer([httpx.Response(503)] * 3)
    with fake.client(retry=QUICK) as client:
        assert client.retry.max_retries == 2
        with pytest.raises(errors.ServerError):
            client.chat("falcon-7b", MESSAGES)
    assert fake.answer_requests == 3
    fake = FakeServer([httpx.Response(503)] * 3)
    with fake.client(retry=QUICK, max_retries=0) as client:
        assert client.retry == RetryPolicy(0, QUICK.backoff, QUICK.max_backoff)
        with pytest.raises(errors.ServerError):
            client.chat("falcon-7b", MESSAGES)
    assert fake.answer_requests == 1


def test_async_client_retries_the_same_way() -> None:
    fake = FakeServer([httpx.ConnectError("refused"), httpx.Response(502)])

    async def main() -> str:
        async with fake.async_client(retry=QUICK) as client:
            return (await client.chat("falcon-7b", MESSAGES)).text

    assert asyncio.run(main()) == "Hello wide world"
    assert fake.answer_requests == 3
