"""Per-contact streams fetch several contacts at once, yet the output (order included)
and the cursors are those of a one-at-a-time run."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import polars as pl
import pytest

from kraiter_sync.emulator import EmulatorApp
from kraiter_sync.export import ExportOptions, read_stream_async
from tests.helpers.exports import client_for, new_app, seed

PER_CONTACT = ["timelines", "enrolments", "memberships"]


class Slow(httpx.AsyncBaseTransport):
    """Answers after a random delay (so answers come back out of order) and counts the
    contact requests in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport, seed: int) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.in_flight = 0
        self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        per_contact = request.url.path.count("/") >= 4  # /api/contacts/{id}/…
        if per_contact:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.rng.uniform(0, 0.01))
            return await self.inner.handle_async_request(request)
        finally:
            if per_contact:
                self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _read(app: EmulatorApp, stream: str, concurrency: int) -> tuple[pl.DataFrame, int]:
    slow: list[Slow] = []

    def wrap(t: httpx.AsyncBaseTransport) -> Any:
        slow.append(Slow(t, seed=concurrency))
        return slow[0]

    async with client_for(app, wrap=wrap) as client:
        frame = await read_stream_async(
            client, stream, options=ExportOptions(concurrency=concurrency, page_size=3)
        )
    return frame, slow[0].most


@pytest.mark.parametrize("stream", PER_CONTACT)
def test_concurrent_per_contact_exports_match_a_one_at_a_time_run_in_order(stream: str) -> None:
    app = new_app()

    async def main() -> None:
        async with client_for(app) as client:
            await seed(client, events=40)
            for i in range(25):
                await client.create_contact(f"more{i}@example.com")

    asyncio.run(main())
    one, one_most = asyncio.run(_read(app, stream, 1))
    many, many_most = asyncio.run(_read(app, stream, 8))
    assert one_most == 1
    assert many_most > 1  # several contacts at once
    assert one.height > 0
    assert many.equals(one)  # same rows, same order
    app.close()
