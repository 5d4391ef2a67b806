"""The one bounded pool of async workers every fan-out uses (writes, look-ups, listings).

``async with worker_pool(handle, concurrency=16) as put: await put(item)`` feeds items to
``concurrency`` workers through a queue twice that deep, so a producer of millions of
rows holds only a few dozen at a time. The pool drains on exit. The first exception a
handler raises stops the pool: later items are dropped unhandled, ``put`` raises it to the
producer, and leaving the block raises it (``on_error`` runs first, e.g. to tell the
engine to stop issuing requests elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

__all__ = ["run_pool", "worker_pool"]

T = TypeVar("T")


@asynccontextmanager
async def worker_pool(
    handle: Callable[[T], Awaitable[None]],
    *,
    concurrency: int,
    on_error: Callable[[], None] | None = None,
) -> AsyncIterator[Callable[[T], Awaitable[None]]]:
    """A bounded pool of workers running ``handle``; yields ``put`` to feed it."""
    size = max(1, concurrency)
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize=size * 2)
    errors: list[BaseException] = []

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            if errors:
                continue  # the pool failed: drain without handling
            try:
                await handle(item[0])
            except Exception as exc:
                errors.append(exc)
                if on_error is not None:
                    on_error()

    async def put(item: T) -> None:
        if errors:
            raise errors[0]
        await queue.put((item,))

    workers = [asyncio.create_task(worker()) for _ in range(size)]
    try:
        yield put
    finally:
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    if errors:
        raise errors[0]


async def run_pool(
    items: Iterable[T], handle: Callable[[T], Awaitable[None]], *, concurrency: int
) -> None:
    """Run ``handle`` over ``items`` with at most ``concurrency`` at once."""
    async with worker_pool(handle, concurrency=concurrency) as put:
        for item in items:
            await put(item)
