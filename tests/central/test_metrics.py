"""``GET /metrics`` on prometheus-client: standard collectors, gateways by status, firing
incidents, webhook deliveries against real HTTP receivers, every series it had before;
parsed with prometheus-client's own text parser."""

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from central.metrics import Metrics
from central.service import Central
from tests.central.alert_helpers import SECRET, Receiver, death, telemetry, write_rules
from wire.structs import convert

RULES = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level_cm}
    above: 300
    severity: critical
  - name: river-bands
    kind: levels
    match: {metric: level_cm}
    levels: {siaga: 400, awas: 500}
    severities: {awas: critical}
"""

# every series /metrics had before prometheus-client (operators' dashboards use them)
KEPT = [
    "pantau_readings_ingested_total",
    "pantau_events_ingested_total",
    "pantau_write_latency_seconds_bucket",
    "pantau_write_latency_seconds_count",
    "pantau_write_batch_points_bucket",
    "pantau_pending_points",
    "pantau_pending_messages",
]


ROOT = Path(__file__).resolve().parents[2]


def alert_rule_series(group: str) -> set[str]:
    """The pantau_* series the shipped Prometheus alerting rules of ``group`` use."""
    doc = yaml.safe_load((ROOT / "deploy/prometheus/pantau-alerts.yml").read_text())
    [rules] = [g["rules"] for g in doc["groups"] if g["name"] == group]
    return {name for rule in rules for name in re.findall(r"pantau_[a-z_]+", rule["expr"])}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def central(tmp_path: Path, receiver: Receiver) -> Iterator[Central]:
    from central.config import CentralConfig

    rules = write_rules(tmp_path / "rules.yaml", RULES)
    down = f"http://127.0.0.1:{_closed_port()}/hook"
    config = convert(
        {
            "influx": {"url": "http://127.0.0.1:9", "database": "unused"},
            "data_dir": str(tmp_path / "data"),
            "rules_file": str(rules),
            "webhooks": [
                {"name": "ops", "url": receiver.url, "secret": SECRET, "timeout": "2s"},
                {"name": "pager", "url": down, "secret": SECRET, "timeout": "2s"},
            ],
        },
        CentralConfig,
    )
    c = Central(config)
    yield c
    c.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_show_process_gateways_incidents_and_webhook_outcomes(
    client: TestClient, central: Central, reader: dict[str, str], receiver: Receiver
) -> None:
    now = time.time()
    registry = central.registry
    registry.create_gateway("gw-new", site="kota-a")  # provisioned, never heard
    registry.heard("gw-up", "kota-a", 1, now=now)
    registry.heard("gw-gone", "kota-a", 1, now=now)
    registry.state(death("gw-gone", now))

    alerts = central.alerts
    alerts.observe("telemetry", telemetry("gw-up", now, {"level_cm": 320}))
    alerts.run_once()  # river-high fires (critical); river-bands stays below siaga
    alerts.outbox.deliver_due()
    receiver.wait(1)

    response = client.get("/metrics", headers=reader)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(response.text)

    assert got[("process_resident_memory_bytes", ())] > 1e6
    assert got[("process_open_fds", ())] >= 3
    assert any(name == "python_info" for name, _ in got)
    assert any(name == "python_gc_collections_total" for name, _ in got)

    assert got[("pantau_gateways", (("status", "online"),))] == 1
    assert got[("pantau_gateways", (("status", "offline"),))] == 1
    assert got[("pantau_gateways", (("status", "never_seen"),))] == 1

    firing = "pantau_incidents_firing"
    assert got[(firing, (("rule", "river-high"), ("severity", "critical")))] == 1
    # a rule that is not firing shows as 0, for each severity it can fire with
    assert got[(firing, (("rule", "river-bands"), ("severity", "warning")))] == 0
    assert got[(firing, (("rule", "river-bands"), ("severity", "critical")))] == 0

    deliveries = "pantau_webhook_deliveries_total"
    assert got[(deliveries, (("outcome", "delivered"), ("webhook", "ops")))] == 1
    assert got[(deliveries, (("outcome", "retried"), ("webhook", "ops")))] == 0
    assert got[(deliveries, (("outcome", "retried"), ("webhook", "pager")))] == 1  # refused
    assert got[(deliveries, (("outcome", "delivered"), ("webhook", "pager")))] == 0
    assert got[(deliveries, (("outcome", "failed"), ("webhook", "pager")))] == 0

    names = {name for name, _ in got}
    for name in KEPT:
        assert name in names, name
    # every series the shipped alerting rules use is one central serves
    used = alert_rule_series("pantau-central")
    assert len(used) >= 6
    assert used <= names, used - names


def test_a_4xx_counts_as_failed(
    client: TestClient, central: Central, reader: dict[str, str], receiver: Receiver
) -> None:
    receiver.answer = 410
    central.alerts.observe("telemetry", telemetry("gw-up", time.time(), {"level_cm": 330}))
    central.alerts.run_once()
    central.alerts.outbox.deliver_due("ops")
    got = samples(client.get("/metrics", headers=reader).text)
    key = ("pantau_webhook_deliveries_total", (("outcome", "failed"), ("webhook", "ops")))
    assert got[key] == 1


def test_each_metrics_has_its_own_registry_and_nothing_goes_to_the_global_one() -> None:
    first, second = Metrics(), Metrics()
    first.count_message("telemetry")
    first.wrote(points=12, readings=10, events=2, seconds=0.01)
    a, b = samples(first.render().decode()), samples(second.render().decode())
    assert a[("pantau_messages_received_total", (("kind", "telemetry"),))] == 1
    assert a[("pantau_readings_ingested_total", ())] == 10
    assert a[("pantau_events_ingested_total", ())] == 2
    assert b[("pantau_messages_received_total", (("kind", "telemetry"),))] == 0
    assert b[("pantau_readings_ingested_total", ())] == 0
    assert not [m for m in REGISTRY.collect() if m.name.startswith("pantau_")]


WORKER = """
import os, sys
from pathlib import Path
from central.workers import share_metrics
path = share_metrics(Path(sys.argv[1]), clean=False)
from central.metrics import Metrics
m = Metrics(multiprocess_dir=path)
for _ in range(int(sys.argv[2])):
    m.count_message("telemetry")
m.wrote(points=20, readings=20, events=0, seconds=0.01)
m.pending_points = int(sys.argv[2])
m.hold("429" if sys.argv[2] == "3" else None)
m.sync()
print(os.getpid())
"""

SCRAPE = """
import sys
from pathlib import Path
from central.workers import share_metrics, _forget_process
path = share_metrics(Path(sys.argv[1]), clean=sys.argv[2] == "clean")
from central.metrics import Metrics
for pid in sys.argv[3:]:
    _forget_process(path, int(pid))
sys.stdout.write(Metrics(multiprocess_dir=path).render().decode())
"""


def _python(code: str, *args: object) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_several_workers_are_counted_together_live_gauges_only_while_they_run(
    tmp_path: Path,
) -> None:
    """``run --workers N``: worker 0's /metrics adds up every worker's counters; each
    live gauge combines the workers still running (a fresh interpreter per process:
    prometheus-client reads PROMETHEUS_MULTIPROC_DIR when it is imported)."""
    pids = [_python(WORKER, tmp_path, n).strip() for n in (3, 4)]
    both = samples(_python(SCRAPE, tmp_path, "keep"))
    assert both[("pantau_messages_received_total", (("kind", "telemetry"),))] == 7
    assert both[("pantau_readings_ingested_total", ())] == 40
    assert both[("pantau_write_batch_points_count", ())] == 2
    assert both[("pantau_pending_points", ())] == 7  # livesum
    assert both[("pantau_write_holding", ())] == 1  # livemax: one worker holds
    assert both[("process_cpu_seconds_total", ())] > 0  # the scraping process's own
    # worker 3 ended: its counts stay, its live gauges go
    one = samples(_python(SCRAPE, tmp_path, "keep", pids[0]))
    assert one[("pantau_messages_received_total", (("kind", "telemetry"),))] == 7
    assert one[("pantau_pending_points", ())] == 4
    assert one[("pantau_write_holding", ())] == 0
    # worker 0 starts afresh: counters from 0
    fresh = samples(_python(SCRAPE, tmp_path, "clean"))
    assert fresh[("pantau_messages_received_total", (("kind", "telemetry"),))] == 0
