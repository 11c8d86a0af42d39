"""Per-second rates from SNMP counters, across wraps and device restarts.

A pure class, no I/O: feed it each poll's counter value, the sample time and
(when known) the device's uptime; it answers the rate since the previous poll,
or ``None`` with the reason when no honest rate exists.

Rules, in order:

1. The first value gives no rate (nothing to compare with).
2. The device's uptime going back means it restarted: its counters started
   again from zero, so this value gives no rate; the next one does.
3. A counter that went down without a restart either wrapped (it passed
   ``2**width - 1`` and started again from 0) or was reset (an interface reset,
   an agent that lost its counters). A wrap leaves a small step; a reset would
   show as a step of more than half the counter's range, which no link can do
   in one polling interval, so that is treated as a reset: no rate.
4. A sample time that did not move forward gives no rate.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """The answer for one poll: ``value`` per second, or ``None`` and ``reason``."""

    value: float | None
    reason: str | None = None


class CounterRate:
    """Turns successive readings of one counter into a per-second rate."""

    def __init__(self, width: int = 64) -> None:
        if width not in (32, 64):
            raise ValueError("counter width is 32 or 64 bits")
        self.width = width
        self._value: int | None = None
        self._at: float | None = None
        self._uptime: int | None = None

    def reset(self) -> None:
        self._value = self._at = self._uptime = None

    def update(self, value: int, at: float, uptime: int | None = None) -> Rate:
        """The rate for ``value`` read at ``at`` (seconds); ``uptime`` in any
        monotonically increasing device unit (sysUpTime's hundredths)."""
        modulus = 1 << self.width
        if not 0 <= value < modulus:
            self.reset()
            return Rate(None, f"counter value {value} outside {self.width}-bit range")
        previous, previous_at, previous_uptime = self._value, self._at, self._uptime
        self._value, self._at, self._uptime = value, at, uptime
        if previous is None or previous_at is None:
            return Rate(None, "first sample; rate from the next poll")
        if uptime is not None and previous_uptime is not None and uptime < previous_uptime:
            return Rate(
                None, "device restarted (uptime went back); the rate comes with the next poll"
            )
        elapsed = at - previous_at
        if elapsed <= 0:
            return Rate(None, "sample time did not advance")
        delta = value - previous
        if delta < 0:
            delta += modulus
            if delta >= modulus // 2:
                return Rate(None, "counter was reset; rate from the next poll")
        return Rate(delta / elapsed)
