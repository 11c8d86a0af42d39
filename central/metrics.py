"""Counters and histograms for ``GET /metrics`` (Prometheus text format 0.0.4)."""

import threading
from collections import defaultdict
from collections.abc import Iterable


class Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = sorted(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.total}')
        lines.append(f"{name}_sum {self.sum:.6f}")
        lines.append(f"{name}_count {self.total}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.readings_ingested = 0
        self.events_ingested = 0
        self.messages: defaultdict[str, int] = defaultdict(int)
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.write_errors: defaultdict[str, int] = defaultdict(int)
        self.write_latency = Histogram([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.batch_points = Histogram([10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000])
        self.pending_points = 0
        self.pending_messages = 0
        self.gauges: dict[str, tuple[str, float]] = {}

    def count_message(self, kind: str) -> None:
        with self._lock:
            self.messages[kind] += 1

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def wrote(self, points: int, readings: int, events: int, seconds: float) -> None:
        with self._lock:
            self.readings_ingested += readings
            self.events_ingested += events
            self.write_latency.observe(seconds)
            self.batch_points.observe(points)

    def write_failed(self, kind: str) -> None:
        with self._lock:
            self.write_errors[kind] += 1

    def set_gauge(self, name: str, help_text: str, value: float) -> None:
        self.gauges[name] = (help_text, value)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP pantau_readings_ingested_total Readings written to InfluxDB.",
                "# TYPE pantau_readings_ingested_total counter",
                f"pantau_readings_ingested_total {self.readings_ingested}",
                "# HELP pantau_events_ingested_total Events written to InfluxDB.",
                "# TYPE pantau_events_ingested_total counter",
                f"pantau_events_ingested_total {self.events_ingested}",
                "# HELP pantau_messages_received_total MQTT messages received, by kind.",
                "# TYPE pantau_messages_received_total counter",
            ]
            lines += [
                f'pantau_messages_received_total{{kind="{k}"}} {v}'
                for k, v in sorted(self.messages.items())
            ]
            lines += [
                "# HELP pantau_messages_rejected_total Messages dead-lettered, by reason.",
                "# TYPE pantau_messages_rejected_total counter",
            ]
            lines += [
                f'pantau_messages_rejected_total{{reason="{k}"}} {v}'
                for k, v in sorted(self.rejected.items())
            ]
            lines += [
                "# HELP pantau_write_errors_total Failed InfluxDB writes, by kind.",
                "# TYPE pantau_write_errors_total counter",
            ]
            lines += [
                f'pantau_write_errors_total{{kind="{k}"}} {v}'
                for k, v in sorted(self.write_errors.items())
            ]
            lines += self.write_latency.render(
                "pantau_write_latency_seconds", "Time to write one batch to InfluxDB."
            )
            lines += self.batch_points.render(
                "pantau_write_batch_points", "Points in each batch written to InfluxDB."
            )
            lines += [
                "# HELP pantau_pending_points Points received but not yet written.",
                "# TYPE pantau_pending_points gauge",
                f"pantau_pending_points {self.pending_points}",
                "# HELP pantau_pending_messages Messages received but not yet acknowledged.",
                "# TYPE pantau_pending_messages gauge",
                f"pantau_pending_messages {self.pending_messages}",
            ]
            for name, (help_text, value) in sorted(self.gauges.items()):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
