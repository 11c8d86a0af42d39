"""One poller per device: ticks aligned to the interval, missed ticks skipped.

A poller only knows how to poll its device. A failed poll becomes bad-quality
readings and a retry at the next tick, never a crash; it logs once when the
device starts failing and once when it recovers. Each poller is its own task
with its own timeout, so one dead device never delays another.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.clock import Clock, next_tick
from agent.drivers import Driver, DriverError, EventOut, Sample
from wire import value_type

log = logging.getLogger(__name__)

ReadingSink = Callable[[str, int, list[Sample]], None]
"""Receives (device id, sample time in ms, samples)."""

EventSink = Callable[[str, EventOut], None]
"""Receives (device id, event) for events a poll raised (a bin's pickup)."""


@dataclass
class DeviceHealth:
    failing_since: float | None = None
    last_error: str | None = None
    polls: int = 0
    failures: int = 0
    skipped_ticks: int = 0
    wrong_type: int = 0  # values of another type than the profile declares
    last_poll: float | None = field(default=None)


class Poller:
    def __init__(
        self, driver: Driver, sink: ReadingSink, clock: Clock, events: EventSink | None = None
    ) -> None:
        self.driver = driver
        self.sink = sink
        self.clock = clock
        self.events = events
        self.health = DeviceHealth()
        self._types = driver.value_types()
        self._open = False
        self._lock = asyncio.Lock()

    @property
    def device_id(self) -> str:
        return self.driver.device.id

    async def run(self) -> None:
        interval = self.driver.device.interval
        tick = next_tick(self.clock.time(), interval)
        try:
            while True:
                await self.clock.sleep_until(tick)
                await self.poll(tick)
                following = next_tick(self.clock.time(), interval)
                missed = round((following - tick) / interval) - 1
                if missed > 0:
                    self.health.skipped_ticks += missed
                    log.debug(
                        "device %s: polling fell behind, skipped %d tick(s) from %.3f to %.3f",
                        self.device_id,
                        missed,
                        tick + interval,
                        following - interval,
                    )
                tick = following
        finally:
            await self._close()

    async def poll(self, at: float) -> list[Sample]:
        """Poll once for the tick at ``at``; hands the samples to the sink and returns them."""
        async with self._lock:
            samples = await self._read(at)
            raised: list[EventOut] = []
            if self.driver.derive is not None:
                samples, raised = self.driver.derive.apply(samples, at)
        self.health.polls += 1
        self.health.last_poll = at
        self.sink(self.device_id, round(at * 1000), samples)
        if self.events is not None:
            for event in raised:
                self.events(self.device_id, event)
        return samples

    async def _read(self, at: float) -> list[Sample]:
        device = self.driver.device
        error = "no attempt"
        for _attempt in range(device.retries + 1):
            try:
                # a shared line is waited for outside the timeout: only this
                # device's own requests count against it
                async with self.driver.turn(), asyncio.timeout(device.timeout):
                    if not self._open:
                        await self.driver.open()
                        self._open = True
                    samples = await self.driver.read(at)
            except TimeoutError:
                error = f"timeout after {device.timeout:g}s"
            except DriverError as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a driver bug must not stop the gateway
                log.debug("device %s: driver raised", device.id, exc_info=True)
                error = f"{type(exc).__name__}: {exc}"
            else:
                self._recovered()
                return self._typed(samples)
            await self._close()
        self._failed(error, at)
        return [
            Sample(metric, None, unit, quality="bad", error=error)
            for metric, unit in self.driver.metrics()
        ]

    def _typed(self, samples: list[Sample]) -> list[Sample]:
        """A value of another type than the profile declares becomes a bad reading
        (counted in the device's health as ``wrong_type``), never a stored value that
        would clash with the metric's numbers in InfluxDB."""
        types = self._types
        for sample in samples:
            value = sample.value
            if value is None:
                continue
            declared = types.get(sample.metric, "number")
            got = value_type(value)
            if got != declared and not (declared == "number" and got == "bool"):
                self.health.wrong_type += 1
                sample.error = f"wrong type: the profile declares {declared}, got {got} {value!r}"
                sample.value, sample.quality = None, "bad"
                sample.error = sample.error[:200]
        return samples

    def _failed(self, error: str, at: float) -> None:
        self.health.failures += 1
        if self.health.failing_since is None:
            self.health.failing_since = at
            log.warning("device %s: failing: %s", self.device_id, error)
        self.health.last_error = error

    def _recovered(self) -> None:
        if self.health.failing_since is not None:
            log.info("device %s: recovered", self.device_id)
        self.health.failing_since = None
        self.health.last_error = None

    async def _close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that
            # lands as the close finishes, and a stopping agent's poller would poll on
            async with asyncio.timeout(5):
                await self.driver.close()
        except Exception:
            log.debug("device %s: close failed", self.device_id, exc_info=True)
