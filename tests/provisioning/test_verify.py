"""verify: the gateway's own credentials against a REAL mosquitto; central (a real
subscriber with central's broker identity behind a small HTTP API) must see it."""

import threading
from pathlib import Path

import pytest

import wire
from tests.provisioning.conftest import TOKEN
from tests.provisioning.mqtt_helpers import Client


@pytest.fixture
def setup(run, tmp_path: Path, make_broker, central):
    broker_dir = tmp_path / "broker"
    # the broker must exist before the bundle names its URL
    assert run("broker-config", "--out", broker_dir).rc == 0
    server = make_broker(
        extra=f"password_file {broker_dir / 'passwd'}\nacl_file {broker_dir / 'acl'}\n",
        anonymous=False,
    )
    assert (
        run(
            "gateway",
            "add",
            "gw-verify-1",
            "--site",
            "Ambon",
            "--broker",
            server.url,
            "--central",
            central.url,
            "--token",
            TOKEN,
            "--out",
            tmp_path / "b",
        ).rc
        == 0
    )
    assert run("broker-config", "--out", broker_dir).rc == 0
    server.stop()
    server.start()  # reload the passwd/acl with the new gateway
    # "central": subscribes with its own broker identity and records last_seen
    listener = Client(
        server.port, "pantau-central", (broker_dir / "central.password").read_text().strip()
    )
    assert listener.connect()
    listener.subscribe("pantau/v1/+/state")
    stop = threading.Event()
    received: list[wire.State] = []

    def pump() -> None:
        while not stop.is_set():
            try:
                topic, payload = listener.messages.get(timeout=0.1)
            except Exception:
                continue
            gw, kind = wire.parse_topic(topic)
            state = wire.decode(kind, payload, gw)
            received.append(state)
            central.seen(gw, state.ts / 1000)

    thread = threading.Thread(target=pump)
    thread.start()
    yield server, received
    stop.set()
    thread.join(5)
    listener.close()


def test_verify_publishes_a_valid_birth_and_central_sees_it(run, setup, central) -> None:
    _server, received = setup
    r = run("verify", "gw-verify-1", "--central", central.url, "--token", TOKEN, "--wait", "10")
    assert r.rc == 0, r.err
    assert "central saw it" in r.out
    state = received[-1]
    assert state.gateway == "gw-verify-1" and state.status == "online"
    assert state.reason == "provisioning verify"
    get = [q for q in central.requests if q["method"] == "GET"]
    assert get and get[-1]["path"] == "/api/v1/gateways/gw-verify-1"


def test_verify_fails_when_central_never_sees_it(run, setup, central, tmp_path: Path) -> None:
    central.gateways["gw-verify-1"]["last_seen"] = "2020-01-01T00:00:00Z"
    central.seen = lambda *a: None  # central is not connected to this broker
    r = run("verify", "gw-verify-1", "--central", central.url, "--token", TOKEN, "--wait", "1")
    assert r.rc == 1 and "central has not seen gw-verify-1" in r.err


def test_verify_with_a_wrong_password_is_refused(run, setup, tmp_path: Path) -> None:
    (tmp_path / "b" / "gw-verify-1" / "mqtt.password").write_text("wrong-password-xyz\n")
    r = run("verify", "gw-verify-1")
    assert r.rc == 1 and "refused gw-verify-1" in r.err and "wrong-password-xyz" not in r.err


def test_verify_against_no_broker(run, setup) -> None:
    server, _ = setup
    server.stop()
    r = run("verify", "gw-verify-1")
    assert r.rc == 1 and "cannot reach the broker" in r.err
