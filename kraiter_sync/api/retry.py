"""Retry policy as data: which failures to retry, how long to wait, how often.

Every client method is one attempt (docs/internals.md); the caller decides whether a
retry is safe and uses :func:`call_with_retry`. Only errors whose ``retriable`` flag is
true are retried (429, 5xx, transport failures); other 4xx answers are final and
become rejects. Waits are exponential with *full jitter* (a uniform draw between 0
and the exponential cap, which spreads a crowd of workers retrying together), but
never shorter than a server's ``Retry-After`` (itself capped by ``max_delay``).

``max_retries=0`` means exactly one attempt. ``before_retry(exc, attempt)`` runs
before each retry: the engine verifies ambiguous outcomes there (was the event
created after all?) and counts retries; raising from it stops retrying with that
error. Sleep and the random source are injectable so tests assert the exact waits.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from kraiter_sync.errors import ApiError, KraiterSyncError

__all__ = [
    "MAX_RETRY_AFTER",
    "BeforeRetry",
    "RetryPolicy",
    "call_with_retry",
    "is_retriable",
    "parse_retry_after",
]

T = TypeVar("T")
BeforeRetry = Callable[[BaseException, int], Awaitable[None] | None]

#: The longest wait a ``Retry-After`` may impose, on one request (``RetryPolicy``) or on
#: every worker (the rate controller's pause): a server or proxy asking for hours would
#: stall the run; past this it waits the cap, then tries again.
MAX_RETRY_AFTER = 60.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date), as
    the server said (callers cap it); ``now`` is the wall clock (unix seconds) for dates.

    A date without a zone (``-0000``, which RFC 5322 defines as UTC with no local zone
    claimed) is read as UTC, never in the machine's zone. A value of 0 or less, or one
    that cannot be read, means "no hint" (None): it must never make a caller retry in a
    hot loop (kraiter-api.md §4).
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def is_retriable(exc: BaseException) -> bool:
    """True for kraiter-sync errors that sending again can fix (429, 5xx, transport)."""
    return isinstance(exc, KraiterSyncError) and exc.retriable


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry one request. ``max_retries`` counts retries, not attempts."""

    max_retries: int = 5
    #: First backoff cap in seconds; doubles per attempt (before jitter).
    base_delay: float = 0.5
    #: Largest wait, whether from backoff or from ``Retry-After``.
    max_delay: float = MAX_RETRY_AFTER
    #: Injectable randomness for the jitter (``random.random`` by default).
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    #: Injectable sleep (``asyncio.sleep`` by default).
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            msg = f"max_retries must be 0 or more, got {self.max_retries}"
            raise ValueError(msg)
        if self.base_delay < 0 or self.max_delay < 0:
            msg = "retry delays must not be negative"
            raise ValueError(msg)

    def wait_for(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait: float = self.rng() * cap
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    before_retry: BeforeRetry | None = None,
) -> T:
    """Await ``fn()`` until it succeeds, fails for good, or retries run out.

    The last error is re-raised as is (``reraise=True``), so callers only ever see
    the exception tree of :mod:`kraiter_sync.errors`.

    The first attempt runs outside tenacity: almost every call succeeds at once, and
    building a retry controller per request cost about a tenth of the importer's CPU.
    Waits and attempt numbers are exactly those of one tenacity loop.
    """
    try:
        return await fn()
    except Exception as exc:
        if not is_retriable(exc) or policy.max_retries == 0:
            raise
        first = exc
    if before_retry is not None:
        result = before_retry(first, 1)
        if result is not None:
            await result
    await policy.sleep(policy.wait_for(1, first))

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_for(state.attempt_number + 1, exc)

    async def before_sleep(state: RetryCallState) -> None:
        if before_retry is None or state.outcome is None:
            return
        exc = state.outcome.exception()
        if exc is None:
            return
        result = before_retry(exc, state.attempt_number + 1)
        if result is not None:
            await result

    async def again() -> T:
        # A coroutine function for tenacity, whatever ``fn`` is (a lambda returning a
        # coroutine would otherwise come back un-awaited, as a "success").
        return await fn()

    retrying = AsyncRetrying(
        sleep=policy.sleep,
        stop=stop_after_attempt(policy.max_retries),
        wait=wait,
        retry=retry_if_exception(is_retriable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(again)
