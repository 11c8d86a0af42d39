"""Small pieces the network drivers (ping, tcp, http, snmp) share."""

import ipaddress
import os
import re
from typing import Any

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

# What is left of the device's poll timeout when a check must give up on its own,
# so it can still report "down" before the poller cancels it.
MARGIN = 0.9


class Host(str):
    """A host name, IPv4 or IPv6 address (brackets allowed and removed), no port."""

    @classmethod
    def parse(cls, value: Any) -> "Host":
        if not isinstance(value, str):
            raise ValueError(
                f"{value!r} is not a host name or IP address (give e.g. 10.20.0.5 or cam1.local)"
            )
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        try:
            return cls(ipaddress.ip_address(value))
        except ValueError:
            pass
        name = value.rstrip(".")
        if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
            raise ValueError(
                f"{value!r} is not a host name or IP address (give e.g. 10.20.0.5 or cam1.local, "
                "without scheme or port)"
            )
        return cls(value)


def budget(device_timeout: float, configured: float | None) -> float:
    """Seconds a check may wait: its own timeout, cut to fit inside the poll timeout."""
    limit = device_timeout * MARGIN
    return limit if configured is None else min(configured, limit)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def describe(exc: OSError) -> str:
    """A short reason for a network error: "Connection refused", not asyncio's wrapping."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
