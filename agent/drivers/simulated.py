"""``simulated``: values computed from the sample time, for demos and loss tests.

``counter`` metrics give the number of whole intervals since the Unix epoch at
the sample time, so a lost or duplicated reading shows as a gap or a repeat.
"""

import asyncio
import math
from typing import Annotated, Literal

from msgspec import Meta

from agent.drivers.base import ConnectionBase, Driver, DriverError, ProfileBase, Sample
from wire.structs import Section


class SimMetric(Section):
    metric: Annotated[str, Meta(min_length=1)]
    kind: Literal["counter", "sine", "constant"] = "counter"
    unit: str | None = None
    amplitude: float = 1.0
    period: Annotated[float, Meta(gt=0)] = 3600.0
    value: float = 0.0


class SimProfile(ProfileBase):
    metrics: Annotated[list[SimMetric], Meta(min_length=1)]


class SimConnection(ConnectionBase):
    fail: bool = False  # always fail, to exercise bad-quality paths
    delay: Annotated[float, Meta(ge=0)] = 0.0  # seconds each poll takes


class SimulatedDriver(Driver):
    name = "simulated"
    Profile = SimProfile
    Connection = SimConnection

    async def read(self, at: float) -> list[Sample]:
        if self.connection.delay:
            await asyncio.sleep(self.connection.delay)
        if self.connection.fail:
            raise DriverError("simulated failure")
        t = at
        out = []
        for m in self.profile.metrics:
            if m.kind == "counter":
                value: float | int = math.floor(t / self.device.interval + 1e-9)
            elif m.kind == "sine":
                value = m.value + m.amplitude * math.sin(2 * math.pi * t / m.period)
            else:
                value = m.value
            out.append(Sample(m.metric, value, m.unit))
        return out

    def metrics(self) -> list[tuple[str, str | None]]:
        return [(m.metric, m.unit) for m in self.profile.metrics]
