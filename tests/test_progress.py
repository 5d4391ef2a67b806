"""Progress: ETA from the rate budget, bar only on a TTY, JSON progress lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kraiter_sync.logs import configure_logging
from kraiter_sync.progress import Progress, ProgressState


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_eta_uses_rate_budget() -> None:
    st = ProgressState(total=1000, sent=400, rate=100.0)
    assert st.eta() == 6.0
    assert ProgressState(total=None, rate=5.0).eta() is None
    assert ProgressState(total=10, rate=None).eta() is None


def test_no_bar_when_not_a_tty_or_quiet() -> None:
    assert not Progress(10, stream=io.StringIO()).bar_enabled
    assert not Progress(10, stream=FakeTTY(), quiet=True).bar_enabled
    assert not Progress(10, stream=FakeTTY(), log_format="json").bar_enabled


def test_bar_on_a_tty_shows_counters() -> None:
    out = FakeTTY()
    with Progress(100, stream=out) as progress:
        assert progress.bar_enabled
        progress.update(sent=50, retries=2, rate_limited=1, rate=10.0)
        assert progress.describe() == "10/s  ETA 0:05  429s 1  retries 2"


@pytest.fixture
def _restore_logger() -> object:
    logger = logging.getLogger("kraiter_sync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.mark.usefixtures("_restore_logger")
def test_json_progress_lines_are_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json")
    now = [0.0]
    progress = Progress(10, log_format="json", stream=io.StringIO(), clock=lambda: now[0])
    progress.update(sent=1, rate=2.0)
    now[0] = 1.0
    progress.update(sent=2)  # within the interval: no line
    now[0] = 6.0
    progress.update(sent=3)
    progress.close()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["sent"] for line in lines] == [1, 3, 3]
    assert lines[0]["event"] == "progress"
    assert lines[0]["eta_s"] == 4.5
