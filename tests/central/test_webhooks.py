"""Webhook delivery against a real HTTP receiver: retries with backoff, permanent
failures, expiry, timeouts, the Alertmanager payload and the signature."""

import argparse
from pathlib import Path

import pytest

from central.alerts import signing
from central.alerts.cli import webhook_test
from central.alerts.service import AlertService
from tests.central.alert_helpers import (
    SECRET,
    FakeTime,
    Receiver,
    config,
    step,
    telemetry,
    write_rules,
)

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


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def service_for(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime, **alerts: object
) -> AlertService:
    rules = write_rules(tmp_path / "rules.yaml", RULES)
    return AlertService(config(tmp_path, rules, receiver.url, database, **alerts), now=clock)


def fire(service: AlertService, clock: FakeTime, value: float = 320) -> None:
    service.observe("telemetry", telemetry("gw-w", clock(), {"level_cm": value}))
    step(service, clock)


@pytest.mark.parametrize("outage", ["connection refused", "HTTP 500"])
def test_receiver_down_30s_then_up_gets_the_alert_exactly_once(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime, outage: str
) -> None:
    service = service_for(tmp_path, database, receiver, clock)
    try:
        if outage == "HTTP 500":
            receiver.answer = 500
        else:
            receiver.stop()
        fire(service, clock)
        for _ in range(30):
            step(service, clock, 1)
        [row] = service.outbox.search()
        assert row["state"] == "pending" and row["attempts"] >= 4  # backoff: 1, 2, 4, 8 s...
        assert row["attempts"] <= 7
        assert ("500" in row["last_error"]) == (outage == "HTTP 500")
        if outage == "HTTP 500":
            receiver.answer = 200
        else:
            receiver.start()  # the same port again
        for _ in range(120):
            step(service, clock, 1)
        assert receiver.statuses() == [("firing", "river-high")]
        [row] = service.outbox.search()
        assert row["state"] == "delivered" and row["response_status"] == 200
        assert receiver.received[0].headers["X-Pantau-Delivery"] == row["uid"]
    finally:
        service.stop()


def test_a_4xx_is_a_permanent_failure_recorded_with_the_response(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime
) -> None:
    receiver.answer, receiver.body = 400, b'{"error": "unknown receiver"}'
    service = service_for(tmp_path, database, receiver, clock)
    try:
        fire(service, clock)
        for _ in range(10):
            step(service, clock, 10)
        assert receiver.attempts == 1
        [row] = service.outbox.search()
        assert row["state"] == "failed"
        assert row["response_status"] == 400
        assert row["response_body"] == '{"error": "unknown receiver"}'
        assert row["last_error"] == "HTTP 400"
    finally:
        service.stop()


def test_delivery_expires_after_webhook_expiry(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime
) -> None:
    receiver.answer = 503
    service = service_for(
        tmp_path, database, receiver, clock, webhook_expiry="2m", max_backoff="20s"
    )
    try:
        fire(service, clock)
        for _ in range(13):
            step(service, clock, 10)
        [row] = service.outbox.search()
        assert row["state"] == "expired"
        assert "gave up" in row["last_error"] and "503" in row["last_error"]
        attempts = receiver.attempts
        step(service, clock, 600)
        assert receiver.attempts == attempts  # nothing more
    finally:
        service.stop()


def test_a_hanging_receiver_times_out_and_is_retried(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime
) -> None:
    receiver.answer = "hang"
    rules = write_rules(tmp_path / "rules.yaml", RULES)
    cfg = config(tmp_path, rules, receiver.url, database)
    cfg.webhooks[0].timeout = 0.3
    service = AlertService(cfg, now=clock)
    try:
        fire(service, clock)
        [row] = service.outbox.search()
        assert row["state"] == "pending" and row["last_error"].startswith("timed out")
        receiver.answer = 200
        receiver.release()
        step(service, clock, 5)
        assert receiver.statuses() == [("firing", "river-high")]
    finally:
        service.stop()


def test_payload_is_alertmanager_v4_and_the_signature_verifies(
    tmp_path: Path, database: str | None, receiver: Receiver, clock: FakeTime
) -> None:
    service = service_for(tmp_path, database, receiver, clock)
    try:
        fire(service, clock, 301)
        step(service, clock, 5)
        fire(service, clock, 280)
        firing, resolved = (r.json for r in receiver.wait(2))
        assert set(firing) == {
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        }
        assert firing["version"] == "4" and firing["receiver"] == "ops"
        assert firing["status"] == "firing" and resolved["status"] == "resolved"
        assert firing["groupKey"] == resolved["groupKey"]
        assert firing["truncatedAlerts"] == 0
        assert firing["groupLabels"] == {"alertname": "river-high"}
        assert firing["externalURL"] == "http://central.example:8080"
        alert = firing["alerts"][0]
        assert set(alert) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        incident = service.incidents.search()[0]
        assert (
            alert["generatorURL"]
            == f"http://central.example:8080/api/v1/incidents/{incident['id']}"
        )
        assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert alert["startsAt"].endswith("Z")
        assert alert["annotations"] == {"summary": "river-1 at kota-a: 301 cm"}
        assert resolved["alerts"][0]["endsAt"] > resolved["alerts"][0]["startsAt"]

        got = receiver.received[0]
        header = got.headers[signing.HEADER]
        delivery = got.headers[signing.DELIVERY_HEADER]
        assert header.startswith("t=") and ",v2=" in header
        assert signing.verify(SECRET, got.body, header, delivery, now=clock())
        tampered = got.body.replace(b"301", b"299")
        assert tampered != got.body
        assert not signing.verify(SECRET, tampered, header, delivery, now=clock())
        assert not signing.verify("another-secret", got.body, header, delivery, now=clock())
        # a captured notification passed off as a new delivery
        assert not signing.verify(SECRET, got.body, header, "0" * 32, now=clock())
        assert not signing.verify(SECRET, got.body, header, delivery, now=clock() + 3600)
        assert not signing.verify(SECRET, got.body, "v2=deadbeef", delivery, now=clock())
    finally:
        service.stop()


def test_webhook_test_command_sends_a_signed_sample(receiver: Receiver) -> None:
    import time

    args = argparse.Namespace(url=receiver.url, secret="cli-secret", status="resolved")
    assert webhook_test(args) == 0
    [got] = receiver.wait(1)
    assert got.json["status"] == "resolved" and got.json["version"] == "4"
    header = got.headers[signing.HEADER]
    assert signing.verify("cli-secret", got.body, header, "test", now=time.time())
    receiver.answer = 400
    assert webhook_test(args) == 1
