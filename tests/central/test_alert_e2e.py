"""The real thing: ``python -m central run`` with real mosquitto and InfluxDB, killed
mid-incident (SIGKILL) and started again; rules reloaded with SIGHUP."""

import json
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import wire
from scripts.services import InfluxDB, Mosquitto, free_port
from tests.central.alert_helpers import SECRET, Receiver, telemetry, write_rules
from tests.central.helpers import CentralProcess, Publisher, central_yaml, wait_for

RULES = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level_cm}
    above: 300
    clear_below: 290
    severity: critical
    annotations: {summary: "{device} at {site}: {value} cm"}
"""


def delivered(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'").fetchone()
        return int(row[0])


def test_central_killed_mid_incident_fires_once_and_sends_the_resolution(
    tmp_path: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    influx_db: str,
    gateway_id: str,
    receiver: Receiver,
) -> None:
    rules = write_rules(tmp_path / "rules.yaml", RULES)
    config = central_yaml(
        tmp_path / "central.yaml",
        broker.url,
        influx.url,
        influx_db,
        tmp_path / "data",
        api_port=free_port(),
        rules_file=str(rules),
        webhooks=[{"name": "ops", "url": receiver.url, "secret": SECRET}],
        alerts={"evaluation_interval": "200ms"},
    )
    topic = wire.topic(gateway_id, "telemetry")
    publisher = Publisher(broker.port, f"pub-{gateway_id}")
    api_port = int(json.loads(config.read_text())["api"]["listen"].rpartition(":")[2])
    central = CentralProcess(config, api_port, tmp_path / "c.log")
    seq = iter(range(1, 100))

    def level(value: float) -> None:
        message = telemetry(gateway_id, time.time(), {"level_cm": value}, seq=next(seq))
        publisher.publish(topic, wire.encode(message))

    try:
        central.start()
        wait_for(lambda: central.ready()["broker"], 15, "central to connect to the broker")
        level(320)
        receiver.wait(1)
        # central records the delivery just after the receiver answers; a kill in between
        # sends that notification again (same X-Pantau-Delivery id): at-least-once.
        wait_for(lambda: delivered(tmp_path / "data" / "alerts.db") == 1, 5, "the delivery record")
        central.kill()  # SIGKILL mid-incident

        level(330)  # still high, then back down, while central is away:
        level(280)  # the broker keeps both for central's persistent session
        publisher.wait_acked(3)
        central.start()
        got = receiver.wait(2, timeout=20)
        time.sleep(1.0)  # room for a wrong second firing to arrive
        assert receiver.statuses() == [("firing", "river-high"), ("resolved", "river-high")]
        assert got[0].json["alerts"][0]["fingerprint"] == got[1].json["alerts"][0]["fingerprint"]

        # SIGHUP with a bad rules file: refused, logged with rule and key, old rules stay
        rules.write_text(RULES.replace("above: 300", "above: high"))
        assert central.proc is not None
        central.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "rules[0] (river-high).above" in central.output(), 10, "the reload error")
        assert central.alive
        level(340)
        receiver.wait(3, timeout=10)
        assert receiver.statuses()[-1] == ("firing", "river-high")
    finally:
        publisher.close()
        central.stop()
