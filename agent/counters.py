"""Wrapping event counters (a tipping-bucket rain gauge): total and rate across wraps and resets.

A device counter is an unsigned integer that counts events (bucket tips) since the
device booted. It wraps to 0 after ``wrap - 1`` and restarts from 0 when the device
reboots. Both look the same on the wire, a value lower than the previous one, so
we tell them apart by how many events each reading would imply:

* **wrap**: the previous value was near the top and the new value near the bottom,
  so ``wrap - previous + new`` is a plausible number of events between two samples
  (at most ``max_delta``). Those events are added.
* **reset**: otherwise the device rebooted and counted ``new`` events since it came
  back. Only ``new`` is added: a reset is never negative rain, and never 65 000 tips.
* **jump**: a value *higher* than the previous by more than ``max_delta`` is not
  believable (a corrupt answer, a replaced sensor); it is taken as the new baseline
  and nothing is added.

The total starts at the device's own count at the first sample (``first * per_count``),
so on site it matches what the device shows until its first wrap. It is a monotonic
counter from then on, except that it starts again when the agent restarts: consumers
take increases, as they do with any counter.

The rate is the increase since the previous sample divided by the time between the
two samples (the scheduled sample times), in ``per_count`` units per ``rate_per``
seconds. There is no rate at the first sample, nor after a gap longer than
``max_gap`` seconds (the average over hours says little); the total still counts the
events of a long gap, as long as the counter did not wrap more than once meanwhile.
"""

from dataclasses import dataclass
from typing import Literal

Change = Literal["first", "count", "wrap", "reset", "jump"]


@dataclass(frozen=True, slots=True)
class CounterUpdate:
    """What one sample meant: the events added, the running total and the rate."""

    change: Change
    delta: int  # events added by this sample
    total: float  # accumulated amount, in per_count units
    rate: float | None  # per_count units per rate_per seconds; None when unknown


class WrappingCounter:
    """The state of one device counter; feed it every good sample with its sample time."""

    def __init__(
        self,
        wrap: int = 65536,
        per_count: float = 1.0,
        max_delta: int | None = None,
        rate_per: float = 3600.0,
        max_gap: float | None = None,
    ) -> None:
        if wrap < 2:
            raise ValueError("wrap must be at least 2")
        self.wrap = wrap
        self.per_count = per_count
        self.max_delta = max_delta if max_delta is not None else wrap // 2
        self.rate_per = rate_per
        self.max_gap = max_gap
        self.last: int | None = None
        self.last_at: float | None = None
        self.count = 0  # accumulated events since the first sample (plus the first value)

    @property
    def total(self) -> float:
        """The accumulated amount, rounded to 9 decimals (3 * 0.2 gives 0.6)."""
        return round(self.count * self.per_count, 9)

    def update(self, value: int, at: float) -> CounterUpdate:
        """Account for ``value`` read at ``at`` (Unix seconds). ``value`` must be in range."""
        if not 0 <= value < self.wrap:
            raise ValueError(f"counter value {value} outside 0..{self.wrap - 1}")
        previous, previous_at = self.last, self.last_at
        if previous_at is not None and at <= previous_at:
            # an out-of-order or repeated sample: report, change nothing
            return CounterUpdate("count", 0, self.total, None)
        self.last, self.last_at = value, at
        if previous is None or previous_at is None:
            self.count = value
            return CounterUpdate("first", 0, self.total, None)
        change: Change
        if value >= previous:
            delta = value - previous
            change = "count"
            if delta > self.max_delta:
                change, delta = "jump", 0
        else:
            wrapped = self.wrap - previous + value
            if wrapped <= self.max_delta:
                change, delta = "wrap", wrapped
            else:
                change, delta = "reset", value
        self.count += delta
        gap = at - previous_at
        rate: float | None = None
        if change != "jump" and (self.max_gap is None or gap <= self.max_gap):
            rate = round(delta * self.per_count * self.rate_per / gap, 9)
        return CounterUpdate(change, delta, self.total, rate)
