"""Durations as written in config and rules files: ``100ms``, ``1s``, ``5m``, ``1h``, ``1d``."""

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

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


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
"""A pydantic field type: accepts ``"100ms"`` or seconds, holds seconds as float."""
