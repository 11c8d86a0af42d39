"""The driver seam: one small interface every protocol implements.

A *polling* driver answers ``read()`` once per tick; a *stream* driver (a tapping
box copying receipts) runs until cancelled and emits events as they come.
"""

import abc
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from agent.derived import Derivation, DerivedSpec, EventSpec, SettingSpec
from wire import Quality, ValueType
from wire.structs import Section


class DriverError(Exception):
    """A poll or connection failed; the poller reports bad readings and retries."""


class ProfileBase(Section):
    """Keys every profile file has; drivers subclass it with their own."""

    driver: str
    model: str | None = None
    vendor: str | None = None
    description: str | None = None
    # values worked out from a poll and the device's settings, and events (agent/derived.py)
    settings: dict[str, SettingSpec] = msgspec.field(default_factory=dict)
    derived: list[DerivedSpec] = msgspec.field(default_factory=list)
    events: list[EventSpec] = msgspec.field(default_factory=list)


class ConnectionBase(Section):
    """A device's ``connection:`` keys in agent.yaml; drivers subclass it with their own."""


@dataclass(slots=True)
class Sample:
    """One value from one poll; the poller stamps device id and sample time."""

    metric: str
    value: float | int | bool | str | None
    unit: str | None = None
    quality: Quality = "good"
    error: str | None = None


@dataclass(slots=True)
class EventOut:
    """One discrete event from a stream driver (e.g. a receipt)."""

    kind: str
    ts: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PortClaim:
    """A port a device opens. Devices may name the same port only when every one of
    them has the same ``share`` tag (one Modbus RTU master polling many units) and the
    same ``settings``; otherwise the config is refused naming both devices."""

    port: str  # "/dev/ttyUSB0", "10.0.0.5:502"
    kind: str  # "serial port", "Modbus TCP gateway": how the error names the port
    share: str | None = None  # None: the device needs the port for itself
    settings: tuple[tuple[str, Any], ...] = ()  # must agree between sharers


@dataclass(frozen=True, slots=True)
class DeviceContext:
    id: str
    interval: float
    timeout: float
    retries: int


class Driver(abc.ABC):
    """A polling driver. Subclasses set ``name``, ``Profile`` and ``Connection``."""

    name: ClassVar[str]
    Profile: ClassVar[type[ProfileBase]] = ProfileBase
    Connection: ClassVar[type[ConnectionBase]] = ConnectionBase

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        self.device = device
        self.profile = profile
        self.connection = connection
        # the profile's derived values and events with this device's settings (set by
        # agent.devices; the poller applies it to every poll)
        self.derive: Derivation | None = None

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect. Raise DriverError when the device can't be reached."""

    @abc.abstractmethod
    async def read(self, at: float) -> list[Sample]:
        """Poll once for the tick at ``at`` (Unix seconds, the sample time).
        Raise DriverError when the whole poll failed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection; must not raise."""

    def claims(self) -> list[PortClaim]:
        """The ports this device opens, checked against the other devices' before start."""
        return []

    @classmethod  # noqa: B027 - optional hook
    def link(cls, drivers: Sequence["Driver"]) -> None:
        """Called once per shared port with every driver sharing it (same ``share`` tag),
        before any is opened: the place to hand them one connection."""

    def turn(self) -> AbstractAsyncContextManager[None]:
        """Held by the poller around one poll attempt, outside the poll's timeout: a
        driver on a shared line waits here for the line, so waiting for the other
        devices' polls never counts against this device's timeout."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def metrics(self) -> list[tuple[str, str | None]]:
        """(metric, unit) for every value a poll gives, to report bad readings."""

    def reported_metrics(self) -> set[str]:
        """Every metric the device may report: ``metrics()``, the profile's derived values
        and the ones a driver sends at some polls only."""
        derived = getattr(self.profile, "derived", None) or ()
        return {m for m, _ in self.metrics()} | {d.metric for d in derived}

    def value_types(self) -> dict[str, ValueType]:
        """metric -> the type its profile declares (a Modbus ``type: bool`` point, an SNMP
        ``kind: text`` point...); numbers unless a driver says otherwise. The poller turns a
        value of another type into a bad reading, and central checks it again."""
        return dict.fromkeys(sorted(self.reported_metrics()), "number")


class StreamDriver(Driver):
    """A driver that runs continuously and emits events (and maybe samples)."""

    @abc.abstractmethod
    async def stream(self, emit: Callable[[EventOut], None]) -> None:
        """Run until cancelled; call ``emit`` for each event. Must survive bad input."""

    async def read(self, at: float) -> list[Sample]:
        return []

    def metrics(self) -> list[tuple[str, str | None]]:
        return []
