"""Reading the next chunk in a thread of its own while the current ones are validated.

The events pipeline (:class:`kraiter_sync.validate.engine.ChunkedValidation`) keeps the
cores busy with chunks already read; when the source's reading also ran on its "ahead"
thread, that thread read and then checked, one after the other, and the cores were busy
1.6 of 2 on a Parquet file read through pyarrow (1.7 with this). The reader starts on the
next chunk when the consumer takes one, so at most one chunk more is held than before.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["ReadAhead"]

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked reader looks whether it was told to stop


class ReadAhead(Generic[T]):
    """Iterate ``items`` from a background thread, one item ahead of the consumer.

    Items and their order are the source's; an exception the source raises is raised
    here, in the consumer's thread, when its turn comes. :meth:`close` (also on leaving a
    ``with`` block) stops the reader and closes the source's iterator in the reader's
    thread, so a source's clean-up (temporary files) runs even when the consumer stops
    early.
    """

    def __init__(self, items: Iterable[T], *, name: str = "kraiter-read-ahead") -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        # one permit: the reader reads an item only after the consumer took the last one
        self._permits = threading.Semaphore(1)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(iter(items),), name=name)
        self._thread.daemon = True
        self._thread.start()

    def _offer(self, item: tuple[str, Any]) -> bool:
        """Queue ``item`` unless told to stop first; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def _permitted(self) -> bool:
        """Wait until the consumer took the last item; False when told to stop first."""
        while not self._stop.is_set():
            if self._permits.acquire(timeout=_POLL_S):
                return True
        return False

    def _run(self, it: Iterator[T]) -> None:
        try:
            while self._permitted():
                try:
                    item = next(it)
                except StopIteration:
                    self._offer(("done", None))
                    return
                if not self._offer(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer(("error", exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "item":
            self._permits.release()  # the reader may start on the next one
            return value  # type: ignore[no-any-return]
        self._finished = True
        self._thread.join()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop reading (the item being read is finished first) and wait for the reader."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            # make room, in case the reader waits to queue one more
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
