"""An asyncio event loop on virtual time: ``asyncio.sleep`` returns at once, the clock jumps.

Used to drive the rate controller against a simulated server deterministically and in
milliseconds of real time. The loop's selector, instead of blocking for ``timeout``
seconds, advances the virtual clock by that much. Nothing in it may do real I/O.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.BaseSelector):
    def __init__(self, loop_clock: list[float]) -> None:
        self._clock = loop_clock
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual loop would block forever: nothing is scheduled")
        self._clock[0] += max(0.0, timeout)
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._map


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``time()`` is virtual; waiting advances it instead of sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self._vclock = [start]
        super().__init__(_VirtualSelector(self._vclock))

    def time(self) -> float:
        return self._vclock[0]


def run_virtual(coro: Coroutine[Any, Any, T], start: float = 1000.0) -> T:
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
