"""The events pipeline's read-ahead thread: same items, same errors, bounded, closable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kraiter_sync.errors import InputError
from kraiter_sync.validate.readahead import ReadAhead


class Source:
    """A generator source that records how far it was read and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.produced = 0
        self.closed = threading.Event()
        self.threads: set[str] = set()

    def items(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    msg = f"row {i}: broken input"
                    raise InputError(msg)
                self.produced += 1
                yield i
        finally:
            self.closed.set()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_items_in_order_from_another_thread() -> None:
    source = Source(50)
    with ReadAhead(source.items()) as reader:
        assert list(reader) == list(range(50))
    assert source.closed.is_set()
    assert threading.current_thread().name not in source.threads


def test_reads_one_item_ahead_of_the_consumer() -> None:
    """The next item is read while the consumer works on the last one, and no more:
    memory holds at most one chunk more than without the thread."""
    source = Source(100)
    with ReadAhead(source.items()) as reader:
        assert next(reader) == 0
        wait_until(lambda: source.produced >= 2)
        time.sleep(0.2)  # give it every chance to run further ahead
        assert source.produced == 2
        assert next(reader) == 1
        wait_until(lambda: source.produced >= 3)
        time.sleep(0.1)
        assert source.produced == 3
    assert source.closed.is_set()


def test_source_error_is_raised_in_the_consumer_with_its_type() -> None:
    source = Source(10, fail_at=4)
    got = []
    with ReadAhead(source.items()) as reader, pytest.raises(InputError, match="row 4"):
        got.extend(reader)
    assert got == [0, 1, 2, 3]
    assert source.closed.is_set()


def test_closing_early_stops_the_reader_and_closes_the_source() -> None:
    source = Source(1_000_000)
    reader = ReadAhead(source.items())
    assert next(reader) == 0
    reader.close()
    assert source.closed.is_set()
    assert source.produced < 10
    with pytest.raises(StopIteration):
        next(reader)


def test_events_pipeline_raises_a_source_error_after_the_chunks_before_it() -> None:
    """Through ChunkedValidation: the chunks read before the failure are validated and
    yielded, then the source's own error reaches the caller."""
    import polars as pl

    from kraiter_sync.validate import ChunkedValidation

    def chunks() -> Iterator[pl.DataFrame]:
        for part in range(3):
            yield pl.DataFrame(
                {
                    "email": [f"u{part}-{i}@example.com" for i in range(5)],
                    "name": ["signup"] * 5,
                    "timestamp": ["2024-01-01T00:00:00Z"] * 5,
                }
            )
        msg = "events.csv, line 16: broken input"
        raise InputError(msg)

    run = ChunkedValidation(kind="events")
    got = []
    with pytest.raises(InputError, match="line 16"):
        got.extend(run.run(chunks()))
    assert sum(frame.height for frame in got) == 15
