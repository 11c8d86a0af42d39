"""The Pantau gateway agent: drivers → pollers → disk buffer → MQTT.

Exceptions::

    wire.configfile.ConfigError   agent.yaml or a profile can't be used
    agent.drivers.DriverError     a device poll failed (becomes bad readings)
"""

__all__: list[str] = []
