"""Pantau central: MQTT ingest into InfluxDB, registry, HTTP API, alerts and webhooks.

Exceptions::

    wire.configfile.ConfigError   central.yaml or the rules file can't be used
    central.influx.WriteError     an InfluxDB write failed (.outcome: wire.retry's classification)
"""

__all__: list[str] = []
