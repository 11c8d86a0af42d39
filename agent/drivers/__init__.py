"""Drivers, one module per protocol, looked up by the profile's ``driver`` key.

The protocol library is imported only when its driver is loaded, so a gateway
loads only what its devices use.
"""

import importlib

from agent.drivers.base import (
    ConnectionBase,
    DeviceContext,
    Driver,
    DriverError,
    EventOut,
    PortClaim,
    ProfileBase,
    Sample,
    StreamDriver,
)

REGISTRY: dict[str, str] = {
    "simulated": "agent.drivers.simulated:SimulatedDriver",
    "modbus": "agent.drivers.modbus:ModbusDriver",
    "serial-ascii": "agent.drivers.serial_ascii:SerialAsciiDriver",
    "escpos": "agent.drivers.escpos:EscposDriver",
    "ping": "agent.drivers.ping:PingDriver",
    "tcp": "agent.drivers.tcp:TcpDriver",
    "http": "agent.drivers.http:HttpDriver",
    "snmp": "agent.drivers.snmp:SnmpDriver",
}


class UnknownDriver(LookupError):
    pass


def load_driver(name: str) -> type[Driver]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownDriver(
            f"unknown driver {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Driver] = getattr(module, class_name)
    return cls


__all__ = [
    "REGISTRY",
    "ConnectionBase",
    "DeviceContext",
    "Driver",
    "DriverError",
    "EventOut",
    "PortClaim",
    "ProfileBase",
    "Sample",
    "StreamDriver",
    "UnknownDriver",
    "load_driver",
]
