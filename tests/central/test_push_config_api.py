"""``POST /api/v1/gateways/<id>/config`` before anything reaches a gateway: admin only,
known gateways only, a clear 503 while central is not connected to the broker."""

from pathlib import Path

from fastapi.testclient import TestClient

from central.config import CentralConfig
from central.service import Central
from scripts.services import InfluxDB
from wire.structs import convert


def test_push_config_needs_admin_a_known_gateway_and_the_broker(
    client: TestClient, admin: dict[str, str], reader: dict[str, str]
) -> None:
    body = {"devices": [{"id": "d-1", "profile": "simulated/counter"}]}
    assert client.post("/api/v1/gateways/gw-p/config", json=body).status_code == 401
    assert client.post("/api/v1/gateways/gw-p/config", json=body, headers=reader).status_code == 403
    missing = client.post("/api/v1/gateways/gw-p/config", json=body, headers=admin)
    assert missing.status_code == 404
    created = client.post("/api/v1/gateways", json={"id": "gw-p", "site": "S"}, headers=admin)
    assert created.status_code == 201
    offline = client.post("/api/v1/gateways/gw-p/config", json=body, headers=admin)
    assert offline.status_code == 503
    assert offline.json()["detail"] == "central is not connected to the broker"
    bad = client.post("/api/v1/gateways/gw-p/config", json={**body, "timeout": 0}, headers=admin)
    assert bad.status_code == 422
    unknown = client.post(
        "/api/v1/gateways/gw-p/config", json={**body, "device": []}, headers=admin
    )
    assert unknown.status_code == 422


def test_with_several_workers_every_worker_gets_the_command_replies(
    tmp_path: Path, influx: InfluxDB, influx_db: str
) -> None:
    """Readings are split over a shared subscription; a command's reply must reach the
    worker serving the API, which waits for it, so replies are not shared out."""
    config = convert(
        {
            "influx": {"url": influx.url, "database": influx_db},
            "data_dir": str(tmp_path),
            "mqtt": {"shared_group": "pantau-central"},
        },
        CentralConfig,
    )
    c = Central(config)
    try:
        subscriptions = c.ingest.subscriptions()
    finally:
        c.close()
    assert "pantau/v1/+/cmd/reply" in subscriptions
    assert "$share/pantau-central/pantau/v1/+/telemetry" in subscriptions
    assert not any(s.startswith("$share/") and s.endswith("cmd/reply") for s in subscriptions)
