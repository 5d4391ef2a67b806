"""Retry policy as data: tenacity, exponential backoff with full jitter, Retry-After aware.

What is retried is decided by the error itself (``KraiterSyncError.retriable``): 429,
5xx and transport failures are; every other 4xx is final and becomes a reject. How long
to wait: Kraiter's ``Retry-After`` when it gave one (capped), else "full jitter" —
a uniform draw between 0 and ``min(max_delay, base_delay * 2**attempt)`` — so many
workers failing together do not come back together.

``max_retries=0`` means exactly one attempt. Sleep and randomness are injectable so
tests assert the waits without sleeping.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from kraiter_sync.errors import ApiError, KraiterSyncError

__all__ = ["RetryPolicy", "call_with_retry", "is_retriable"]

T = TypeVar("T")


def is_retriable(exc: BaseException) -> bool:
    """Whether sending again can help (the error tree decides)."""
    return isinstance(exc, KraiterSyncError) and exc.retriable


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait; immutable, shareable."""

    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: The longest Retry-After honoured; beyond it we wait this long and try again.
    retry_after_cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            msg = f"max_retries must be 0 or more, not {self.max_retries}"
            raise ValueError(msg)

    def wait_for(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, ApiError) and exc.retry_after is not None and exc.retry_after > 0:
            return min(exc.retry_after, self.retry_after_cap)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(0, ceiling)


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Run ``fn`` until it succeeds, fails for good, or the policy runs out.

    The last exception is re-raised as is (``reraise=True``). ``on_retry(exc, attempt)``
    is called before each wait, e.g. to count retries.
    """

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.wait_for(state.attempt_number, exc)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.attempt_number)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=wait,
        retry=retry_if_exception(is_retriable),
        before_sleep=before_sleep,
        sleep=policy.sleep,
        reraise=True,
    )
    return await retrying(fn)
