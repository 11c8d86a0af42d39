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
from typing import TYPE_CHECKING, Annotated, Literal

from msgspec import Meta

from wire import Duration
from wire.structs import Section

if TYPE_CHECKING:
    from agent.drivers.base import Sample

Change = Literal["first", "count", "wrap", "reset", "jump"]


class CounterSpec(Section):
    """A profile point's ``counter:`` keys, for every driver that reads counts (modbus, http)."""

    wrap: Annotated[int, Meta(ge=2)] | None = None  # default: the driver's (2**bits of the type)
    per_count: Annotated[float, Meta(gt=0)] = 1.0  # amount per count, e.g. 0.2 mm per tip
    total_metric: Annotated[str, Meta(min_length=1)]
    total_unit: str | None = None
    rate_metric: str | None = None
    rate_unit: str | None = None
    rate_per: Duration = Duration(3600.0)  # the rate is given per this long (1h → mm/h)
    # the amount counted since the previous poll (vehicles in this interval); not at the
    # first poll, nor after a reset or an unbelievable jump
    delta_metric: str | None = None
    delta_unit: str | None = None
    # reported only at polls where the counter moved (the amount added): a ``stale``
    # alert rule on it means "the counter is stuck"
    moved_metric: str | None = None
    max_delta: Annotated[int, Meta(ge=1)] | None = None  # most counts believable between polls
    max_gap: Duration | None = None  # no rate over a longer gap between samples

    def metric_names(self) -> list[tuple[str, str | None]]:
        """(metric, unit) the counter reports at most polls (not ``moved_metric``)."""
        names = [(self.total_metric, self.total_unit)]
        if self.rate_metric:
            names.append((self.rate_metric, self.rate_unit))
        if self.delta_metric:
            names.append((self.delta_metric, self.delta_unit))
        return names

    def all_metric_names(self) -> list[str]:
        """Every metric the counter may report (``moved_metric`` only at some polls)."""
        names = [name for name, _ in self.metric_names()]
        if self.moved_metric:
            names.append(self.moved_metric)
        return names

    def counter(self, wrap: int) -> "WrappingCounter":
        """A counter's state for one device; ``wrap`` when the profile gives none."""
        return WrappingCounter(
            wrap=self.wrap or wrap,
            per_count=self.per_count,
            max_delta=self.max_delta,
            rate_per=self.rate_per,
            max_gap=self.max_gap,
        )

    def samples(self, update: "CounterUpdate") -> list["Sample"]:
        """The readings one counter update gives: total, rate, delta, moved."""
        from agent.drivers.base import Sample

        samples = [Sample(self.total_metric, update.total, self.total_unit)]
        if self.rate_metric and update.rate is not None:
            samples.append(Sample(self.rate_metric, update.rate, self.rate_unit))
        if update.change in ("count", "wrap", "reset"):
            amount = update.delta if self.per_count == 1 else update.delta * self.per_count
            if self.delta_metric:
                samples.append(Sample(self.delta_metric, amount, self.delta_unit))
            if self.moved_metric and update.delta > 0:
                samples.append(Sample(self.moved_metric, amount, self.delta_unit))
        return samples


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


def point_metric_names(
    metric: str, unit: str | None, counter: CounterSpec | None
) -> list[tuple[str, str | None]]:
    """(metric, unit) a driver's point declares: its own, then its counter's."""
    return [(metric, unit), *(counter.metric_names() if counter is not None else [])]


def point_all_metric_names(metric: str, counter: CounterSpec | None) -> list[str]:
    """Every metric a point may give (``counter.moved_metric`` only at some polls)."""
    return [metric, *(counter.all_metric_names() if counter is not None else [])]
