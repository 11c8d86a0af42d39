"""Per-gateway limits (``limits:`` in central.yaml), checked before anything is stored
or cached: a gateway inventing device or metric names can't grow InfluxDB's series,
the alert engine's caches or central's memory past them.

:class:`Names` remembers, per gateway, the devices and metrics it was allowed; a
reading of a known (device, metric) costs one set lookup. Names are never forgotten
while central runs (a restart starts afresh, and InfluxDB keeps what was stored).
"""

from dataclasses import dataclass, field

import msgspec

import wire
from central.config import LimitsSection

__all__ = ["Names", "Refusal"]


_NEW = object()


@dataclass
class _Gateway:
    devices: dict[str, dict[str, str | None]] = field(default_factory=dict)  # metric -> unit
    metrics: set[str] = field(default_factory=set)
    series: int = 0
    types: dict[str, dict[str, str]] = field(default_factory=dict)  # device -> declared


@dataclass
class Refusal:
    """Readings of one message beyond the limits (``detail`` says which, briefly)."""

    count: int
    detail: str


class Names:
    def __init__(self, limits: LimitsSection) -> None:
        self.limits = limits
        self._gateways: dict[str, _Gateway] = {}
        # (gateway, device, metric, unit) of readings whose unit is new or changed, found
        # by :meth:`telemetry` on its way (ingest hands them to the registry and clears)
        self.units: list[tuple[str, str, str, str]] = []

    def name_ok(self, name: str | None) -> bool:
        return name is None or len(name) <= self.limits.name_length

    def _gateway(self, gateway: str) -> _Gateway:
        known = self._gateways.get(gateway)
        if known is None:
            known = self._gateways[gateway] = _Gateway()
        return known

    def _device(self, gw: _Gateway, device: str) -> dict[str, str | None] | str:
        """The device's allowed metrics (with their last unit), or why it is refused."""
        metrics = gw.devices.get(device)
        if metrics is not None:
            return metrics
        limits = self.limits
        if len(device) > limits.name_length:
            return f"device name longer than {limits.name_length}"
        if len(gw.devices) >= limits.devices_per_gateway:
            return f"more than {limits.devices_per_gateway} devices"
        metrics = gw.devices[device] = {}
        return metrics

    def _metric(self, gw: _Gateway, metrics: dict[str, str | None], metric: str) -> str | None:
        """None when (device, metric) is allowed (and now remembered), else why not."""
        limits = self.limits
        if len(metric) > limits.name_length:
            return f"metric name longer than {limits.name_length}"
        if metric not in gw.metrics and len(gw.metrics) >= limits.metrics_per_gateway:
            return f"more than {limits.metrics_per_gateway} metric names"
        if gw.series >= limits.series_per_gateway:
            return f"more than {limits.series_per_gateway} series (device, metric)"
        gw.metrics.add(metric)
        metrics[metric] = None
        gw.series += 1
        return None

    def telemetry(self, message: wire.Telemetry) -> tuple[wire.Telemetry, Refusal | None]:
        """The message with only the readings within the limits, and what was refused.
        Readings kept whose unit is new or changed are added to :attr:`units`."""
        gw = self._gateway(message.gateway)
        refused: list[str] = []
        keep: list[wire.Reading] | None = None
        device = None
        metrics: dict[str, str | None] | str = {}
        why: str | None
        for index, r in enumerate(message.readings):
            if r.device != device:
                device = r.device
                metrics = self._device(gw, device)
            if type(metrics) is dict:
                unit = metrics.get(r.metric, _NEW)  # the last unit, or a metric not seen
                if unit is not _NEW or (why := self._metric(gw, metrics, r.metric)) is None:
                    if r.unit is not None and unit != r.unit:
                        metrics[r.metric] = r.unit
                        self.units.append((message.gateway, device, r.metric, r.unit))
                    if keep is not None:
                        keep.append(r)
                    continue
            else:
                why = str(metrics)
            if keep is None:
                keep = list(message.readings[:index])
            if len(refused) < 5:
                refused.append(f"{r.device}/{r.metric[:80]}: {why}")
        if keep is None:
            return message, None
        count = len(message.readings) - len(keep)
        detail = f"{count} readings beyond the gateway's limits (limits: in central.yaml): "
        return msgspec.structs.replace(message, readings=keep), Refusal(
            count, detail + "; ".join(refused)
        )

    def event_ok(self, message: wire.Event) -> str | None:
        """None when the event's device and kind are within the limits, else why not."""
        gw = self._gateway(message.gateway)
        metrics = self._device(gw, message.device)
        if isinstance(metrics, str):
            return metrics
        if len(message.kind) > self.limits.name_length:
            return f"event kind longer than {self.limits.name_length}"
        return None

    def declare(self, message: wire.State) -> wire.State:
        """A birth message's devices within the limits, and their declared metric types
        remembered for :meth:`declared`."""
        gw = self._gateway(message.gateway)
        gw.types = {}
        devices = []
        for info in message.devices[: self.limits.devices_per_gateway]:
            if len(info.id) > self.limits.name_length:
                continue
            devices.append(info)
            if info.metrics:
                gw.types[info.id] = dict(
                    list(info.metrics.items())[: self.limits.metrics_per_gateway]
                )
        if len(devices) == len(message.devices):
            return message
        return msgspec.structs.replace(message, devices=devices)

    def declared(self, gateway: str) -> dict[str, dict[str, str]] | None:
        """device -> metric -> declared type, from the gateway's last birth message."""
        gw = self._gateways.get(gateway)
        return gw.types if gw is not None and gw.types else None
