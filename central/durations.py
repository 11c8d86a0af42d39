"""The duration type for central's pydantic models (HTTP API schemas, alert rules).

Config files use :class:`wire.Duration` (msgspec); pydantic needs its own validator
and serializer, so the same ``"100ms"``/``"5m"`` syntax is spelled out here.
"""

from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from wire.durations import format_duration, parse_duration

Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
"""A pydantic field type: accepts ``"100ms"`` or seconds, holds seconds as a float,
written back as ``"100ms"``."""
