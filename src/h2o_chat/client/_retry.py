"""When to send a request again, decided as openai-python decides it, in one pure value.

Only failures before any token are asked about (a transport failure before a response, or
an error status), so an answer is never duplicated or silently cut.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from h2o_chat import errors

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date).

    None when neither holds a finite number or a date; a past date counts as 0. A number too
    large for a float is an infinite wait, not a malformed one.
    """
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        if math.isnan(seconds) or (math.isinf(seconds) and "inf" in value.lower()):
            continue  # a literal nan or inf says nothing; an overflowing number says "long"
        return max(0.0, seconds / scale)
    date = headers.get("retry-after")
    try:
        parsed = email.utils.parsedate_tz(date) if date else None
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    except (OverflowError, ValueError, OSError):
        return None


@dataclass(slots=True, frozen=True)
class RetryDecision:
    """What to do after a failed attempt: wait ``delay`` seconds and send again, or (``delay``
    None) raise the error. ``reason`` says why, for the log."""

    delay: float | None
    reason: str


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Up to ``max_retries`` more attempts after connection failures, timeouts before a
    response, and statuses 429, 502, 503 and 504.

    The wait is the server's ``Retry-After`` when it is within ``max_retry_after``; one longer
    than that means the error is raised, carrying it. Otherwise it is ``backoff`` seconds
    doubling each attempt up to ``max_backoff``, less up to a quarter at random, so that
    clients that failed together spread out but still wait most of the delay.
    """

    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise errors.InvalidRequestError("max_retries must be >= 0")

    def decide(self, attempt: int, error: errors.H2oError) -> RetryDecision:
        """After attempt number ``attempt`` (0 for the first) failed with ``error``."""
        if isinstance(error, errors.HTTPStatusError):
            if error.status_code not in RETRYABLE_STATUS:
                return RetryDecision(None, f"status {error.status_code} is not retried")
            retry_after = error.retry_after
        elif isinstance(error, errors.TransportError) and not isinstance(
            error, errors.StreamClosedError
        ):
            retry_after = None
        else:
            return RetryDecision(None, f"{type(error).__name__} is not retried")
        if retry_after is not None and retry_after > self.max_retry_after:
            reason = f"Retry-After {retry_after:g}s is over the {self.max_retry_after:g}s cap"
            return RetryDecision(None, reason)
        if attempt >= self.max_retries:
            return RetryDecision(None, f"no retries left of {self.max_retries}")
        if retry_after:
            return RetryDecision(retry_after, "as Retry-After asked")
        # 2.0**attempt overflows past 1023; 2**64 half-seconds is past any max_backoff anyway.
        delay = min(self.max_backoff, self.backoff * 2.0 ** min(attempt, 64))
        return RetryDecision(delay * (1 - 0.25 * random.random()), "backoff")
