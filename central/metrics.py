"""Central's Prometheus metrics (``GET /metrics``), on prometheus-client.

Each :class:`Metrics` owns its own ``CollectorRegistry``, built with the app (no
process-wide registry, nothing at import time), holding:

* the standard ``process_*``, ``python_info`` and ``python_gc_*`` collectors;
* counters and histograms that ingest and the webhook outbox update as they go
  (readings and events written, messages by kind, rejections by reason, write
  errors, write latency and batch size, ingest latency, webhook deliveries);
* gauges read when /metrics is scraped, from callables the service registers with
  :meth:`Metrics.scraped` (gateways by status, firing incidents by rule): their
  values live in the registry and the alert store, never copied;
* gauges of this process's own state (pending points and messages, writes held, the
  alert lease), registered with :meth:`Metrics.live`.

With ``pantau-central run --workers N`` the workers are separate processes and only
worker 0 serves /metrics, so every worker's Metrics is made with
``multiprocess_dir`` (prometheus-client's multiprocess mode): counters, histograms
and live gauges keep their values in small mmap'd files there, one set per process
(``central.workers.share_metrics`` sets ``PROMETHEUS_MULTIPROC_DIR`` before
prometheus-client is imported and empties the folder when worker 0 starts), and
worker 0's /metrics adds them up: counters and histograms over every worker that ran
since the start (a restarted worker's counts stay), live gauges over the workers
running now (``livesum``, or ``livemax`` for 0/1 flags). Each worker copies its live
gauges into its file at :meth:`Metrics.sync` (every 2 s, and worker 0 before each
scrape). ``process_*`` and ``python_*`` are worker 0's own; the scraped gauges read
the shared registry and alert store, the same from any worker.
"""

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

import wire

__all__ = ["CONTENT_TYPE", "DELIVERY_OUTCOMES", "GATEWAY_STATUSES", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# pantau_webhook_deliveries_total{outcome}: one per attempt
DELIVERY_OUTCOMES = ("delivered", "retried", "failed", "expired")
# pantau_gateways{status}: the registry's 'never-seen' is spelled never_seen here
GATEWAY_STATUSES = ("online", "offline", "never_seen")
# shown as 0 from the start, so rate() and alerting rules see them before the first one
REJECT_REASONS = (
    "bad_json",
    "schema",
    "too_large",
    "gateway_mismatch",
    "bad_topic",
    "influx_rejected",
    "limit",
)
# "held": a write held and retried (wire.retry RETRY or SETTING); "refused"/"too_large": split
WRITE_ERROR_KINDS = ("held", "refused", "too_large")

WRITE_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_POINTS = (10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000)
INGEST_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

Read = Callable[[], dict[tuple[str, ...], float]]
# how worker 0 combines the workers' values of a live gauge (prometheus-client's modes,
# over the processes running now)
LiveMode = Literal["livesum", "livemax"]


class _Scraped(Collector):
    """One gauge family whose samples are read from ``read()`` at each scrape; label
    sets in ``always`` are present (as 0) even when ``read()`` leaves them out."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Read,
        always: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.read = read
        self.always = list(always)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        values = dict.fromkeys(self.always, 0.0)
        values.update(self.read())  # an exception here fails the scrape: Prometheus shows it
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        yield family


class Metrics:
    """Everything /metrics shows; thread-safe (prometheus-client locks each child)."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the folder every worker of ``run --workers N`` keeps its
        values in (see the module's docstring); None: one process, values in memory."""
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)  # what render() shows
        if multiprocess_dir is not None:
            if not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError(
                    "prometheus-client was imported before PROMETHEUS_MULTIPROC_DIR was set "
                    "(call central.workers.share_metrics first)"
                )
            MultiProcessCollector(self.registry, path=str(multiprocess_dir))
        # this process's counters and histograms: with several workers, read back from
        # the files by the MultiProcessCollector above (registered here, they would
        # count worker 0 twice)
        registry = self.registry if multiprocess_dir is None else None
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._live: list[tuple[Gauge, Callable[[], float]]] = []
        self._readings = Counter(
            "pantau_readings_ingested", "Readings written to InfluxDB.", registry=registry
        )
        self._events = Counter(
            "pantau_events_ingested", "Events written to InfluxDB.", registry=registry
        )
        self._messages = Counter(
            "pantau_messages_received",
            "MQTT messages received, by kind.",
            ["kind"],
            registry=registry,
        )
        self._rejected = Counter(
            "pantau_messages_rejected",
            "Messages dead-lettered, by reason.",
            ["reason"],
            registry=registry,
        )
        self._write_errors = Counter(
            "pantau_write_errors",
            "Failed InfluxDB writes, by kind (held: will be tried again; refused: the content "
            "was refused, the batch is split; too_large: 413, the batch is split).",
            ["kind"],
            registry=registry,
        )
        self._write_latency = Histogram(
            "pantau_write_latency_seconds",
            "Time to write one batch to InfluxDB.",
            buckets=WRITE_SECONDS,
            registry=registry,
        )
        self._batch_points = Histogram(
            "pantau_write_batch_points",
            "Points in each batch written to InfluxDB.",
            buckets=BATCH_POINTS,
            registry=registry,
        )
        self._ingest_latency = Histogram(
            "pantau_ingest_latency_seconds",
            "Time from receiving a telemetry or events message to acknowledging it to the "
            "broker, its points written to InfluxDB.",
            buckets=INGEST_SECONDS,
            registry=registry,
        )
        # one child per kind, looked up once (labels() per message costs a lock)
        self._message_counters = {kind: self._messages.labels(kind) for kind in wire.UPLINK_KINDS}
        for reason in REJECT_REASONS:
            self._rejected.labels(reason)
        for kind in WRITE_ERROR_KINDS:
            self._write_errors.labels(kind)
        self._deliveries = Counter(
            "pantau_webhook_deliveries",
            "Webhook delivery attempts, by webhook and outcome "
            "(delivered, retried: a retryable failure, failed: refused for good, expired).",
            ["webhook", "outcome"],
            registry=registry,
        )
        self.pending_points = 0
        self.pending_messages = 0
        self.live(
            "pantau_pending_points",
            "Points received but not yet written.",
            lambda: self.pending_points,
        )
        self.live(
            "pantau_pending_messages",
            "Messages received but not yet acknowledged.",
            lambda: self.pending_messages,
        )
        self._held = Counter(
            "pantau_write_held",
            "InfluxDB write attempts held and retried, their messages kept unacknowledged at "
            "the broker, by cause: an HTTP status (401, 403, 404, 429, 5xx) or unreachable.",
            ["reason"],
            registry=registry,
        )
        self.holding: str | None = None
        self._refused_readings = Counter(
            "pantau_readings_refused",
            "Readings not stored as values, by reason (wrong_type: not the type the profile "
            "declares, stored as a bad reading; limit: beyond the gateway's limits, its "
            "message dead-lettered).",
            ["reason"],
            registry=registry,
        )
        for reason in ("wrong_type", "limit"):
            self._refused_readings.labels(reason)
        self._pruned = Counter(
            "pantau_dead_letters_pruned",
            "Dead letters deleted by retention, by why (age: dead_letters_max_age; size: "
            "dead_letters_max_mb; count: dead_letters_max is enforced as they arrive).",
            ["why"],
            registry=registry,
        )
        self._replayed = Counter(
            "pantau_dead_letters_replayed",
            "Dead letters replayed through the API, by outcome (stored, refused again).",
            ["outcome"],
            registry=registry,
        )
        for why in ("age", "size"):
            self._pruned.labels(why)
        for outcome in ("stored", "refused"):
            self._replayed.labels(outcome)
        self._site_ignored = Counter(
            "pantau_payload_site_ignored",
            "Messages whose payload named another site than the registry has (ignored).",
            registry=registry,
        )
        self.live(
            "pantau_write_holding",
            "1 while InfluxDB writes are held (see /readyz for why), else 0.",
            lambda: 0.0 if self.holding is None else 1.0,
            "livemax",
        )
        self._gauges: dict[str, Gauge] = {}
        self._lock = threading.Lock()

    # updated by ingest

    def count_message(self, kind: str) -> None:
        counter = self._message_counters.get(kind)
        if counter is None:
            counter = self._message_counters[kind] = self._messages.labels(kind)
        counter.inc()

    def reject(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def wrote(self, points: int, readings: int, events: int, seconds: float) -> None:
        if readings:
            self._readings.inc(readings)
        if events:
            self._events.inc(events)
        self._write_latency.observe(seconds)
        self._batch_points.observe(points)

    def acknowledged(self, seconds: Iterable[float]) -> None:
        """Messages acknowledged after their points were written, each with how long
        it took since it was received."""
        for value in seconds:
            self._ingest_latency.observe(value)

    def write_failed(self, kind: str) -> None:
        self._write_errors.labels(kind).inc()

    def dead_letters_pruned(self, why: str, count: int) -> None:
        self._pruned.labels(why).inc(count)

    def dead_letters_replayed(self, stored: int, refused: int) -> None:
        self._replayed.labels("stored").inc(stored)
        self._replayed.labels("refused").inc(refused)

    def refused_readings(self, reason: str, count: int) -> None:
        self._refused_readings.labels(reason).inc(count)

    def site_ignored(self) -> None:
        self._site_ignored.inc()

    def hold(self, reason: str | None) -> None:
        """A write held (not dropped) because of ``reason`` (``"401"``, ``"unreachable"``);
        None: writes go through again."""
        self.holding = reason
        if reason is not None:
            self._held.labels(reason).inc()

    # updated by the webhook outbox

    def webhooks(self, names: Iterable[str]) -> None:
        """Show every outcome of these webhooks from the start (as 0)."""
        for name in names:
            for outcome in DELIVERY_OUTCOMES:
                self._deliveries.labels(name, outcome)

    def delivery(self, webhook: str, outcome: str) -> None:
        self._deliveries.labels(webhook, outcome).inc()

    # registered by the service

    def scraped(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Read,
        always: Iterable[tuple[str, ...]] = (),
    ) -> None:
        """A gauge family computed by ``read()`` at each scrape (``{labels tuple: value}``)."""
        self.registry.register(_Scraped(name, documentation, labels, read, always))

    def live(
        self,
        name: str,
        documentation: str,
        read: Callable[[], float],
        mode: LiveMode = "livesum",
    ) -> None:
        """A gauge without labels whose value is ``read()`` (this process's own state);
        with several workers, worker 0 shows the workers' values combined by ``mode``."""
        if self.multiprocess_dir is None:
            Gauge(name, documentation, registry=self.registry).set_function(read)
            return
        gauge = Gauge(name, documentation, registry=None, multiprocess_mode=mode)
        self._live.append((gauge, read))

    def sync(self) -> None:
        """Copy the live gauges into this process's file (several workers only)."""
        for gauge, read in self._live:
            gauge.set(read())

    def set_gauge(
        self, name: str, help_text: str, value: float, mode: LiveMode = "livesum"
    ) -> None:
        """A plain gauge without labels, created on first use (``mode``: as :meth:`live`)."""
        with self._lock:
            gauge = self._gauges.get(name)
            if gauge is None:
                registry = self.registry if self.multiprocess_dir is None else None
                gauge = self._gauges[name] = Gauge(
                    name, help_text, registry=registry, multiprocess_mode=mode
                )
        gauge.set(value)

    def render(self) -> bytes:
        """The Prometheus text exposition format (0.0.4)."""
        self.sync()
        return generate_latest(self.registry)
