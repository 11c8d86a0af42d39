"""Revoke and rotate from central's admin API, central sharing pantau-provision's state
directory: the broker files central rewrites make a REAL mosquitto refuse the revoked
gateway and the rotated password."""

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.config import CentralConfig
from central.service import Central
from scripts.services import InfluxDB
from tests.provisioning import conftest as provisioning
from tests.provisioning.test_lifecycle import Broker, login
from wire.structs import convert

Result = provisioning.Result
run = provisioning.run  # the pantau-provision CLI in-process, with its secret-leak check


@pytest.fixture
def mosquitto(run: Callable[..., Result], tmp_path: Path) -> Iterator[Broker]:
    server = Broker(run, tmp_path)
    for gw in ("gw-x", "gw-y"):
        r = run("gateway", "add", gw, "--site", "S", "--broker", f"mqtt://127.0.0.1:{server.port}",
                "--out", tmp_path / "b")  # fmt: skip
        assert r.rc == 0, r.err
    server.configure()
    server.start()
    yield server
    server.stop()


def make_central(tmp_path: Path, influx: InfluxDB, db: str, shared: bool) -> Central:
    data: dict = {"influx": {"url": influx.url, "database": db}, "data_dir": str(tmp_path / "c")}
    if shared:
        data["provisioning"] = {
            "state": str(tmp_path / "state"),
            "broker_files": str(tmp_path / "broker"),
        }
    return Central(convert(data, CentralConfig))


def test_revoke_and_rotate_from_the_api_reach_mosquitto(
    tmp_path: Path, influx: InfluxDB, influx_db: str, mosquitto: Broker
) -> None:
    central = make_central(tmp_path, influx, influx_db, shared=True)
    admin = {"Authorization": f"Bearer {central.tokens.create('admin', 'ops')[1]}"}
    reader = {"Authorization": f"Bearer {central.tokens.create('read')[1]}"}
    passwords = {
        gw: (tmp_path / "b" / gw / "mqtt.password").read_text().strip() for gw in ("gw-x", "gw-y")
    }
    try:
        with TestClient(create_app(central.config, central)) as client:
            assert client.post("/api/v1/gateways/gw-x/revoke", headers=reader).status_code == 403
            r = client.post("/api/v1/gateways/gw-x/revoke", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["broker_files"] == str(tmp_path / "broker")
            assert r.json()["revoked"].endswith("Z") and "reload mosquitto" in r.json()["next"]
            mosquitto.reload()
            assert not login(mosquitto.port, "gw-x", passwords["gw-x"])
            assert login(mosquitto.port, "gw-y", passwords["gw-y"])

            r = client.post("/api/v1/gateways/gw-y/rotate", headers=admin)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/gzip"
            with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
                names = set(tar.getnames())
                member = tar.extractfile("gw-y/mqtt.password")
                assert member is not None
                new = member.read().decode().strip()
            assert {"gw-y/agent.yaml", "gw-y/mqtt.password"} <= names
            assert new != passwords["gw-y"]
            mosquitto.reload()
            assert not login(mosquitto.port, "gw-y", passwords["gw-y"])
            assert login(mosquitto.port, "gw-y", new)

            assert client.post("/api/v1/gateways/gw-x/rotate", headers=admin).status_code == 409
            assert client.post("/api/v1/gateways/gw-z/revoke", headers=admin).status_code == 404
    finally:
        central.close()


def test_without_a_shared_state_central_says_how(
    tmp_path: Path, influx: InfluxDB, influx_db: str
) -> None:
    central = make_central(tmp_path, influx, influx_db, shared=False)
    admin = {"Authorization": f"Bearer {central.tokens.create('admin', 'ops')[1]}"}
    try:
        with TestClient(create_app(central.config, central)) as client:
            r = client.post("/api/v1/gateways/gw-x/revoke", headers=admin)
            assert r.status_code == 501 and "provisioning.state" in r.json()["detail"]
    finally:
        central.close()
