"""Time, injected: the system clock in production, a driven clock in tests."""

import asyncio
import math
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Unix seconds."""
        ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


def next_tick(now: float, interval: float) -> float:
    """The first tick strictly after ``now`` on the grid aligned to ``interval``."""
    ticks = math.floor(now / interval + 1e-9) + 1
    return ticks * interval


class FakeClock:
    """A clock tests move by hand; sleepers wake when ``advance`` passes their deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((deadline, fut))
        await fut

    async def advance(self, seconds: float, step: float | None = None) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        end = self._now + seconds
        while True:
            pending = sorted(
                ((d, f) for d, f in self._sleepers if not f.done() and d <= end),
                key=lambda item: item[0],
            )
            if not pending:
                break
            deadline, fut = pending[0]
            self._now = max(self._now, deadline)
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not fut and not f.done()]
            fut.set_result(None)
            for _ in range(20):
                await asyncio.sleep(0)
        self._now = end
        for _ in range(20):
            await asyncio.sleep(0)
