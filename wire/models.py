"""Payload models, version 1. Every uplink payload names its gateway and carries a
per-gateway sequence number ``seq``; every reading carries ``ts``, the time it was
*sampled* on the gateway, in integer milliseconds since the Unix epoch (UTC).

A reading's identity is (gateway, device, metric, ts): redelivering it writes the
same InfluxDB point again.
"""

import re
from typing import Annotated, Any, Literal, dataclass_transform

import msgspec

from wire.structs import FrozenKeywordOnly
from wire.topics import gateway_id_ok

PAYLOAD_VERSION: Literal[1] = 1

Quality = Literal["good", "bad"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
ReadingName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""A reading's device or metric: a :data:`Name` whose "no control characters" rule is
checked once per batch by :func:`reading_names_problem`, which :func:`wire.decode`
calls only when the payload has a backslash: JSON carries a control character in a
string only as an escape (a pattern per field cost more than the rest of decoding a
20-reading batch, and the check on every batch half as much again)."""
_CONTROL = re.compile(r"[\x00-\x1f]")
Millis = Annotated[int, msgspec.Meta(ge=0, lt=10**14)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Value = float | Int64 | bool | str | None
ValueType = Literal["number", "bool", "string"]
"""What a profile declares a metric holds. ``number`` and ``bool`` readings are stored as
numbers (a bool as 1 or 0), ``string`` ones apart from them (docs/protocol.md)."""


def value_type(value: Value) -> ValueType | None:
    """The type of a reading's value (None for no value)."""
    if value is None:
        return None
    if value is True or value is False:
        return "bool"
    if isinstance(value, str):
        return "string"
    return "number"


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(msgspec.field,))
class _Model(msgspec.Struct, metaclass=FrozenKeywordOnly, forbid_unknown_fields=True, frozen=True):
    """Payload models are validated when decoded (:func:`wire.decode`), not when built."""


class _Uplink(_Model):
    v: Literal[1] = PAYLOAD_VERSION
    gateway: str
    seq: Count

    def __post_init__(self) -> None:
        if not gateway_id_ok(self.gateway):
            raise ValueError(f"invalid gateway id {self.gateway!r}")


class Reading(_Model):
    device: ReadingName
    metric: ReadingName
    value: Value
    ts: Millis
    quality: Quality = "good"
    error: str | None = None
    unit: str | None = None


class Telemetry(_Uplink):
    """``pantau/v1/<gw>/telemetry``: a batch of readings."""

    site: str | None = None
    readings: Annotated[list[Reading], msgspec.Meta(min_length=1)]


def reading_names_problem(message: Telemetry) -> str | None:
    """``readings.<i>.<device|metric>: control characters are not allowed``, or None."""
    names = [name for r in message.readings for name in (r.device, r.metric)]
    if not _CONTROL.search("".join(names)):
        return None
    at = next(i for i, name in enumerate(names) if _CONTROL.search(name))
    field = "device" if at % 2 == 0 else "metric"
    return f"readings.{at // 2}.{field}: control characters are not allowed"


class Event(_Uplink):
    """``pantau/v1/<gw>/events``: one discrete event (a receipt, a door opening)."""

    site: str | None = None
    device: Name
    kind: Name
    ts: Millis
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None


class DeviceInfo(_Model):
    id: Name
    profile: str
    driver: str
    interval: float | None = None
    # metric -> declared type (from the profile); central refuses readings of another type
    metrics: dict[Name, ValueType] | None = None


class State(_Uplink):
    """``pantau/v1/<gw>/state`` (retained): birth (online) or death (offline)."""

    status: Literal["online", "offline"]
    ts: Millis
    site: str | None = None
    agent_version: str | None = None
    profiles: list[str] = msgspec.field(default_factory=list)
    devices: list[DeviceInfo] = msgspec.field(default_factory=list)
    reason: str | None = None


class DeviceStatus(_Model):
    status: Literal["ok", "failing", "unknown"]
    failing_since: Millis | None = None
    error: str | None = None
    skipped_ticks: Count | None = None  # polls that fell behind, since start
    wrong_type: Count | None = None  # values of another type than the profile declares


class Health(_Uplink):
    """``pantau/v1/<gw>/health``: the gateway's own vitals."""

    ts: Millis
    site: str | None = None
    uptime_s: float | None = None
    cpu_temp_c: float | None = None
    load1: float | None = None
    mem_used_pct: float | None = None
    disk_free_mb: float | None = None
    buffer_depth: int | None = None
    buffer_oldest_age_s: float | None = None
    dropped: int | None = None
    devices: dict[str, DeviceStatus] = msgspec.field(default_factory=dict)


class Command(_Model):
    """``pantau/v1/<gw>/cmd`` (downlink): ``ping``, ``poll-now``, ``reload-config``, ..."""

    v: Literal[1] = PAYLOAD_VERSION
    id: Name
    name: Name
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    ts: Millis | None = None


class CommandReply(_Uplink):
    """``pantau/v1/<gw>/cmd/reply``: the answer to one command, matched by ``id``."""

    id: str
    ok: bool
    result: Any = None
    error: str | None = None
