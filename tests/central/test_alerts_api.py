"""The alert routes of the HTTP API, on a Central whose ingest is not started; alerts
are fed to its AlertService directly and delivered to a real HTTP receiver."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.config import CentralConfig
from central.service import Central
from tests.central.alert_helpers import SECRET, Receiver, birth, telemetry, write_rules
from wire.structs import convert

RULES = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level_cm}
    above: 300
    clear_below: 290
    severity: critical
    annotations: {summary: "{device}: {value} cm"}
"""


@pytest.fixture
def central(tmp_path: Path, receiver: Receiver) -> Iterator[Central]:
    config = convert(
        {
            "influx": {"url": "http://127.0.0.1:9", "database": "unused"},
            "data_dir": str(tmp_path / "data"),
            "rules_file": str(write_rules(tmp_path / "rules.yaml", RULES)),
            "webhooks": [{"name": "ops", "url": receiver.url, "secret": SECRET}],
        },
        CentralConfig,
    )
    c = Central(config)
    yield c
    c.close()


def feed(central: Central, value: float, device: str = "river-1") -> None:
    alerts = central.alerts
    alerts.observe("telemetry", telemetry("gw-api", alerts.now(), {"level_cm": value}, device))
    alerts.run_once()
    alerts.outbox.deliver_due()


def test_active_alerts_incidents_and_ack(
    client: TestClient, central: Central, reader: dict[str, str], admin: dict[str, str]
) -> None:
    assert client.get("/api/v1/alerts").status_code == 401
    central.alerts.observe("state", birth("gw-api", central.alerts.now(), {"river-1": "river/x"}))
    feed(central, 320)
    feed(central, 330, device="river-2")
    feed(central, 100, device="river-2")
    active = client.get("/api/v1/alerts", headers=reader).json()
    assert [(a["device"], a["state"], a["value"]) for a in active] == [("river-1", "firing", 320)]
    assert active[0]["annotations"] == {"summary": "river-1: 320 cm"}
    assert active[0]["labels"]["alertname"] == "river-high"

    history = client.get("/api/v1/incidents", headers=reader).json()
    assert [i["state"] for i in history] == ["resolved", "firing"]
    resolved = client.get("/api/v1/incidents?state=resolved", headers=reader).json()
    assert [i["device"] for i in resolved] == ["river-2"]
    assert client.get("/api/v1/incidents?device=river-9", headers=reader).json() == []

    incident = active[0]["id"]
    assert client.post(f"/api/v1/incidents/{incident}/ack", headers=reader).status_code == 403
    acked = client.post(
        f"/api/v1/incidents/{incident}/ack", headers=admin, json={"comment": "crew sent"}
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acked_by"] == "duty-officer"
    one = client.get(f"/api/v1/incidents/{incident}", headers=reader).json()
    assert [e["event"] for e in one["events"]] == ["firing", "notified", "acknowledged"]
    assert client.post("/api/v1/incidents/9999/ack", headers=admin).status_code == 404


def test_silences_through_the_api(
    client: TestClient,
    central: Central,
    reader: dict[str, str],
    admin: dict[str, str],
    receiver: Receiver,
) -> None:
    body = {"matchers": {"device": "river-*"}, "duration": "2h", "comment": "calibration"}
    assert client.post("/api/v1/silences", headers=reader, json=body).status_code == 403
    bad = client.post("/api/v1/silences", headers=admin, json={"matchers": {"device": "x"}})
    assert bad.status_code == 422 and "until" in bad.text
    created = client.post("/api/v1/silences", headers=admin, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["active"] and created.json()["created_by"] == "duty-officer"
    feed(central, 320)
    assert receiver.received == []
    [alert] = client.get("/api/v1/alerts", headers=reader).json()
    assert alert["state"] == "silenced"
    listed = client.get("/api/v1/silences", headers=reader).json()
    assert [s["comment"] for s in listed] == ["calibration"]
    ended = client.delete(f"/api/v1/silences/{created.json()['id']}", headers=admin)
    assert ended.status_code == 200 and not ended.json()["active"]
    assert client.get("/api/v1/silences", headers=reader).json() == []
    central.alerts.run_once()
    central.alerts.outbox.deliver_due()
    assert receiver.statuses() == [("firing", "river-high")]


def test_deliveries_show_a_permanent_failure_with_the_response(
    client: TestClient, central: Central, reader: dict[str, str], receiver: Receiver
) -> None:
    receiver.answer, receiver.body = 410, b"gone"
    feed(central, 320)
    [row] = client.get("/api/v1/webhooks/deliveries", headers=reader).json()
    assert (row["state"], row["response_status"], row["response_body"]) == ("failed", 410, "gone")
    assert row["webhook"] == "ops" and row["event"] == "firing" and row["attempts"] == 1
    assert client.get("/api/v1/webhooks/deliveries?state=pending", headers=reader).json() == []
    hooks = client.get("/api/v1/webhooks", headers=reader).json()
    assert hooks == [{"name": "ops", "url": receiver.url, "match": {}, "timeout": 10.0}]
    assert SECRET not in client.get("/api/v1/webhooks", headers=reader).text


def test_rules_reload_refuses_a_bad_file_and_keeps_the_old_rules(
    client: TestClient, central: Central, reader: dict[str, str], admin: dict[str, str]
) -> None:
    path = central.config.rules_file
    assert path is not None
    path.write_text(RULES.replace("clear_below: 290", "clear_below: 400"))
    assert client.post("/api/v1/rules/reload", headers=reader).status_code == 403
    refused = client.post("/api/v1/rules/reload", headers=admin)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "old rules stay" in detail["error"]
    assert detail["problems"] == [
        f"{path}: rules[0] (river-high).clear_below: must not be higher than above (300)"
    ]
    rules = client.get("/api/v1/rules", headers=reader).json()["rules"]
    assert rules[0]["definition"]["clear_below"] == 290
    path.write_text(RULES.replace("above: 300", "above: 310"))
    reloaded = client.post("/api/v1/rules/reload", headers=admin)
    assert reloaded.status_code == 200
    assert reloaded.json()["rules"][0]["definition"]["above"] == 310
