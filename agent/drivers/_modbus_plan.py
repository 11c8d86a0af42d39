"""Planning Modbus reads: adjacent points of one function batched into few requests.

Pure, no I/O. A request reads at most 125 registers (holding/input) or 2000 bits
(coil/discrete), the limits of the Modbus specification. Points are merged when they
are adjacent (or separated by at most ``max_gap`` unused addresses, which are then
read and ignored; the default 0 never reads an address the profile does not name,
since many devices answer "illegal data address" for holes in their map).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Function = Literal["holding", "input", "coil", "discrete"]

MAX_REGISTERS = 125
MAX_BITS = 2000
BIT_FUNCTIONS = ("coil", "discrete")


@dataclass(frozen=True, slots=True)
class PointSpan:
    """Where a point lives: its index in the profile, function, first address, size."""

    index: int
    function: Function
    address: int
    size: int

    @property
    def end(self) -> int:  # one past the last address
        return self.address + self.size


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus request and the points it answers."""

    function: Function
    address: int
    count: int
    points: tuple[PointSpan, ...]

    def describe(self) -> str:
        kind = "bits" if self.function in BIT_FUNCTIONS else "registers"
        last = self.address + self.count - 1
        return f"{self.function} {kind} {self.address}-{last}"


def limit(function: Function) -> int:
    return MAX_BITS if function in BIT_FUNCTIONS else MAX_REGISTERS


def plan_reads(
    points: Sequence[PointSpan], max_gap: int = 0, max_count: int | None = None
) -> list[ReadRequest]:
    """Requests covering every point, in function then address order.

    ``max_count`` lowers the per-request register limit (some devices take at most
    32 registers at a time); it never raises it above the specification's.
    """
    requests: list[ReadRequest] = []
    order: list[Function] = ["holding", "input", "coil", "discrete"]
    for function in order:
        cap = limit(function)
        if max_count is not None and function not in BIT_FUNCTIONS:
            cap = min(max_count, cap)
        spans = sorted((p for p in points if p.function == function), key=lambda p: p.address)
        current: list[PointSpan] = []
        start = end = 0
        for span in spans:
            if span.size > cap:
                raise ValueError(f"a point of {span.size} addresses exceeds the limit of {cap}")
            if current and span.address - end <= max_gap and max(end, span.end) - start <= cap:
                current.append(span)
                end = max(end, span.end)
                continue
            if current:
                requests.append(ReadRequest(function, start, end - start, tuple(current)))
            current, start, end = [span], span.address, span.end
        if current:
            requests.append(ReadRequest(function, start, end - start, tuple(current)))
    return requests


def overlaps(points: Sequence[PointSpan]) -> list[tuple[PointSpan, PointSpan]]:
    """Pairs of points (earlier, later) of one function that share an address."""
    found = []
    for function in ("holding", "input", "coil", "discrete"):
        spans = sorted(
            (p for p in points if p.function == function), key=lambda p: (p.address, p.index)
        )
        reach: PointSpan | None = None  # the span reaching furthest so far
        for span in spans:
            if reach is not None and span.address < reach.end:
                pair = (reach, span) if reach.index < span.index else (span, reach)
                found.append(pair)
            if reach is None or span.end > reach.end:
                reach = span
    return found
