"""Retry policy: what is retried, the recorded waits (no real sleeping), the hook."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kraiter_sync import errors
from kraiter_sync.api.retry import RetryPolicy, call_with_retry, is_retriable


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def failing(
    excs: list[BaseException], result: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls = [0]

    async def fn() -> str:
        calls[0] += 1
        if excs:
            raise excs.pop(0)
        return result

    return fn, calls


def api(cls: type[errors.ApiError], retry_after: float | None = None) -> errors.ApiError:
    return cls("boom", method="POST", path="/api/events", retry_after=retry_after)


def policy(rec: Recorder, **kw: object) -> RetryPolicy:
    return RetryPolicy(rng=lambda: 1.0, sleep=rec.sleep, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (api(errors.RateLimitError), True),
        (api(errors.ServerError), True),
        (errors.ConnectError("x"), True),
        (errors.ResponseLostError("x"), True),
        (errors.RequestTimeoutError("x"), True),
        (api(errors.BadRequestError), False),
        (api(errors.ConflictError), False),
        (api(errors.NotFoundError), False),
        (api(errors.UnprocessableError), False),
        (api(errors.AuthenticationError), False),
        (ValueError("bug"), False),
    ],
)
def test_failure_table(exc: BaseException, retried: bool) -> None:
    rec = Recorder()
    fn, calls = failing([exc])
    if retried:
        assert asyncio.run(call_with_retry(fn, policy(rec))) == "ok"
        assert calls[0] == 2
    else:
        with pytest.raises(type(exc)):
            asyncio.run(call_with_retry(fn, policy(rec)))
        assert calls[0] == 1
    assert is_retriable(exc) is retried


def test_exponential_waits_with_full_jitter_recorded() -> None:
    rec = Recorder()
    draws = iter([1.0, 0.5, 0.25, 1.0])
    pol = RetryPolicy(base_delay=1.0, max_delay=3.0, rng=lambda: next(draws), sleep=rec.sleep)
    fn, calls = failing([api(errors.ServerError) for _ in range(4)])
    assert asyncio.run(call_with_retry(fn, pol)) == "ok"
    # caps 1, 2, 4→3, 8→3 times the draws 1, .5, .25, 1
    assert rec.waits == [1.0, 1.0, 0.75, 3.0]
    assert calls[0] == 5


def test_retry_after_is_a_floor_under_the_cap() -> None:
    rec = Recorder()
    pol = RetryPolicy(base_delay=0.1, max_delay=10.0, rng=lambda: 0.0, sleep=rec.sleep)
    fn, _ = failing([api(errors.RateLimitError, 4.0), api(errors.RateLimitError, 99.0)])
    asyncio.run(call_with_retry(fn, pol))
    assert rec.waits == [4.0, 10.0]


def test_max_retries_zero_means_one_attempt() -> None:
    rec = Recorder()
    fn, calls = failing([api(errors.ServerError)])
    with pytest.raises(errors.ServerError):
        asyncio.run(call_with_retry(fn, policy(rec, max_retries=0)))
    assert calls[0] == 1
    assert rec.waits == []


def test_out_of_retries_reraises_the_last_error() -> None:
    rec = Recorder()
    last = errors.ConnectError("last")
    fn, calls = failing([errors.ConnectError("first"), errors.ConnectError("2"), last])
    with pytest.raises(errors.ConnectError) as info:
        asyncio.run(call_with_retry(fn, policy(rec, max_retries=2)))
    assert info.value is last
    assert calls[0] == 3
    assert len(rec.waits) == 2


def test_before_retry_sees_each_failure_and_can_stop() -> None:
    rec = Recorder()
    seen: list[tuple[str, int]] = []

    async def hook(exc: BaseException, attempt: int) -> None:
        seen.append((type(exc).__name__, attempt))
        if attempt == 2:
            raise errors.IncompleteError("verified: already created")

    fn, calls = failing([errors.ResponseLostError("x"), api(errors.ServerError)] * 2)
    with pytest.raises(errors.IncompleteError):
        asyncio.run(call_with_retry(fn, policy(rec), before_retry=hook))
    assert seen == [("ResponseLostError", 1), ("ServerError", 2)]
    assert calls[0] == 2


def test_sync_hook_is_accepted() -> None:
    rec = Recorder()
    count: list[int] = []
    fn, _ = failing([errors.ConnectError("x")])
    asyncio.run(call_with_retry(fn, policy(rec), before_retry=lambda e, n: count.append(n)))
    assert count == [1]


def test_invalid_policy() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_a_lambda_returning_a_coroutine_is_retried_and_awaited() -> None:
    from kraiter_sync.errors import ServerError

    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ServerError("boom", method="POST", path="/api/events")
        return "ok"

    async def no_sleep(_seconds: float) -> None:
        return None

    policy = RetryPolicy(max_retries=5, sleep=no_sleep)
    assert asyncio.run(call_with_retry(lambda: flaky(), policy)) == "ok"
    assert calls["n"] == 3
