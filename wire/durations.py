"""Durations as written in config and rules files: ``100ms``, ``1s``, ``5m``, ``1h``, ``1d``."""

import re
from typing import Any, ClassVar

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: Any) -> float:
    """Seconds from ``"1m30s"``, ``"100ms"``, or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text!r}")
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 100ms, 1s, 5m, 1h")
    s = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 100ms, 1s, 5m, 1h")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Duration(float):
    """A config field type: accepts ``"100ms"`` or seconds, holds seconds as a float
    (see :mod:`wire.structs`; written back as ``"100ms"``).

    A subclass may set ``minimum`` / ``maximum`` (seconds) to bound its field::

        class CommitInterval(Duration):
            minimum, maximum = 0.01, 60.0
    """

    minimum: ClassVar[float] = 0.0
    maximum: ClassVar[float | None] = None

    @classmethod
    def parse(cls, value: Any) -> "Duration":
        seconds = parse_duration(value)
        if seconds < cls.minimum:
            raise ValueError(f"must be at least {format_duration(cls.minimum)}")
        if cls.maximum is not None and seconds > cls.maximum:
            raise ValueError(f"must be at most {format_duration(cls.maximum)}")
        return cls(seconds)

    def __str__(self) -> str:
        return format_duration(self)
