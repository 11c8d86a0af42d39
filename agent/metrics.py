"""The agent's own Prometheus metrics on a local port (``metrics.listen`` in agent.yaml).

Imported only when ``metrics.listen`` is set, so a gateway that does not use it
never loads prometheus-client. prometheus-client's HTTP server answers in its own
thread; each scrape asks the agent's event loop for a snapshot (the agent's
state is only touched from the loop), waiting at most ``SNAPSHOT_TIMEOUT``.

Series: the standard ``process_*`` / ``python_*`` ones, and

* ``pantau_agent_readings_total``, ``pantau_agent_events_total``: sampled and buffered;
* ``pantau_agent_published_total``: items the broker acknowledged (QoS 1 PUBACK);
* ``pantau_agent_buffer_items``, ``pantau_agent_buffer_bytes``,
  ``pantau_agent_buffer_oldest_age_seconds``, ``pantau_agent_buffer_dropped_total``;
* ``pantau_agent_mqtt_connected``, ``pantau_agent_mqtt_in_flight``;
* ``pantau_agent_device_up{device}`` (1 reading, 0 failing), ``pantau_agent_device_polls_total``,
  ``pantau_agent_device_failures_total``, ``pantau_agent_device_skipped_ticks_total``.
"""

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agent.app import Agent

__all__ = ["MetricsServer", "Snapshot", "serve_metrics", "snapshot"]

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 5.0


@dataclass
class Snapshot:
    readings: int = 0
    events: int = 0
    published: int = 0
    buffer_items: int = 0
    buffer_bytes: int = 0
    buffer_oldest_age: float | None = None
    buffer_dropped: int = 0
    mqtt_connected: bool = False
    mqtt_in_flight: int = 0
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


def snapshot(agent: "Agent") -> Snapshot:
    """The agent's figures now; call from the agent's event loop."""
    stats = agent.buffer.stats()
    now = agent.clock.time()
    mqtt = agent.mqtt
    return Snapshot(
        readings=agent.counts["readings"],
        events=agent.counts["events"],
        published=agent.counts["published"],
        buffer_items=stats.depth,
        buffer_bytes=stats.bytes,
        buffer_oldest_age=(
            max(0.0, now - stats.oldest_ts / 1000) if stats.oldest_ts is not None else None
        ),
        buffer_dropped=stats.dropped,
        mqtt_connected=bool(mqtt is not None and mqtt.connected.is_set()),
        mqtt_in_flight=mqtt.in_flight if mqtt is not None else 0,
        devices={
            device: {
                "up": 0 if p.health.failing_since is not None else 1,
                "polls": p.health.polls,
                "failures": p.health.failures,
                "skipped": p.health.skipped_ticks,
                "wrong_type": p.health.wrong_type,
            }
            for device, p in agent.pollers.items()
        },
    )


class _AgentCollector(Collector):
    def __init__(self, agent: "Agent", loop: asyncio.AbstractEventLoop) -> None:
        self.agent = agent
        self.loop = loop

    def _snapshot(self) -> Snapshot:
        async def take() -> Snapshot:
            return snapshot(self.agent)

        future = asyncio.run_coroutine_threadsafe(take(), self.loop)
        return future.result(SNAPSHOT_TIMEOUT)

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield counter("pantau_agent_readings", "Readings sampled and buffered.", s.readings)
        yield counter("pantau_agent_events", "Events (receipts...) buffered.", s.events)
        yield counter(
            "pantau_agent_published", "Buffered items the broker acknowledged.", s.published
        )
        yield gauge(
            "pantau_agent_buffer_items", "Items buffered, not yet acknowledged.", s.buffer_items
        )
        yield gauge("pantau_agent_buffer_bytes", "Bytes of the buffered items.", s.buffer_bytes)
        if s.buffer_oldest_age is not None:
            yield gauge(
                "pantau_agent_buffer_oldest_age_seconds",
                "Age of the oldest buffered item (its sample time).",
                s.buffer_oldest_age,
            )
        yield counter(
            "pantau_agent_buffer_dropped",
            "Items dropped because the buffer was full (since the buffer was made).",
            s.buffer_dropped,
        )
        yield gauge(
            "pantau_agent_mqtt_connected", "1 when connected to the broker.", s.mqtt_connected
        )
        yield gauge(
            "pantau_agent_mqtt_in_flight", "QoS 1 messages awaiting PUBACK.", s.mqtt_in_flight
        )
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "up": GaugeMetricFamily(
                "pantau_agent_device_up",
                "1 when the device's last poll read, 0 while it fails.",
                labels=["device"],
            ),
            "polls": CounterMetricFamily(
                "pantau_agent_device_polls", "Polls of the device.", labels=["device"]
            ),
            "failures": CounterMetricFamily(
                "pantau_agent_device_failures", "Failed polls of the device.", labels=["device"]
            ),
            "skipped": CounterMetricFamily(
                "pantau_agent_device_skipped_ticks",
                "Poll ticks skipped because the previous poll was still running.",
                labels=["device"],
            ),
            "wrong_type": CounterMetricFamily(
                "pantau_agent_device_wrong_type",
                "Values of another type than the profile declares, sent as bad readings.",
                labels=["device"],
            ),
        }
        for device, values in sorted(s.devices.items()):
            for key, family in families.items():
                family.add_metric([device], values[key])
        yield from families.values()


@dataclass
class MetricsServer:
    listen: str
    server: Any
    thread: Any

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(agent: "Agent", listen: str, loop: asyncio.AbstractEventLoop) -> MetricsServer:
    """Serve ``/metrics`` on ``listen`` (host:port). Raises OSError when it can't bind."""
    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(_AgentCollector(agent, loop))
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    bound = f"{host}:{server.server_address[1]}"
    log.info("metrics on http://%s/metrics", bound)
    return MetricsServer(bound, server, thread)
