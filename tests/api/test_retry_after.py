"""One Retry-After parser for the client and the rate controller, read the same in every
time zone, and a pause that a server cannot stretch beyond the cap."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kraiter_sync.api.ratelimit import RateController
from kraiter_sync.api.retry import MAX_RETRY_AFTER, parse_retry_after

#: RFC 5322: "-0000" means UTC, with no claim about the sender's local zone
#: (email.utils gives a naive datetime for it).
DATE = "Sun, 06 Dec 2026 01:10:00 -0000"
WHEN = datetime(2026, 12, 6, 1, 10, tzinfo=UTC).timestamp()


@pytest.fixture
def new_york() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.usefixtures("new_york")
def test_a_minus_zero_date_is_utc_whatever_the_local_zone() -> None:
    assert parse_retry_after(DATE, now=WHEN - 45) == pytest.approx(45.0)


@pytest.mark.usefixtures("new_york")
def test_the_controller_pauses_as_long_as_the_client_reads() -> None:
    wall = WHEN - 45
    ctl = RateController(clock=lambda: 100.0, wall_clock=lambda: wall)
    ctl.after_response(429, {"Retry-After": DATE})
    assert ctl.paused_until - 100.0 == pytest.approx(45.0)


def test_a_server_cannot_pause_every_worker_for_hours() -> None:
    ctl = RateController(clock=lambda: 100.0)
    ctl.after_response(429, {"Retry-After": "7200"})
    assert ctl.paused_until - 100.0 == pytest.approx(MAX_RETRY_AFTER)
    reset = RateController(clock=lambda: 100.0, wall_clock=lambda: 1_000.0)
    reset.after_response(
        429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "10", "X-RateLimit-Reset": "99999"}
    )
    assert reset.paused_until - 100.0 == pytest.approx(MAX_RETRY_AFTER)
