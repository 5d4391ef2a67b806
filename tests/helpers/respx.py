"""The respx set-up shared by the client's request-shape and failure tests.

Its fixtures (``router``, ``anyio_backend``) are registered in conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

BASE = "https://api.kraiter.test"


def mocked(router: respx.MockRouter) -> httpx.AsyncBaseTransport:
    """The client drives its transport directly: hand it respx's router as one."""
    return httpx.MockTransport(router.async_handler)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=True) as mock:
        yield mock
