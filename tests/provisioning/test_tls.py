"""Client certificates against a REAL mosquitto TLS listener with
require_certificate + use_identity_as_username."""

from pathlib import Path

import pytest
from cryptography import x509

from agent.config import load_config
from scripts.services import free_port
from tests.provisioning.mqtt_helpers import Client


@pytest.fixture
def tls_broker(run, tmp_path: Path, make_broker):
    assert run("ca", "init").rc == 0
    tls_port = free_port()
    url = f"mqtts://127.0.0.1:{tls_port}"
    for gw in ("gw-c", "gw-d"):
        r = run("gateway", "add", gw, "--site", "S", "--broker", url, "--out", tmp_path / "b")
        assert r.rc == 0, r.err
    assert run("ca", "server-cert", "127.0.0.1", "localhost", "--out", tmp_path / "srv").rc == 0
    assert run("ca", "client-cert", "pantau-central", "--out", tmp_path / "central").rc == 0
    assert run("broker-config", "--out", tmp_path / "broker").rc == 0
    broker_dir, srv = tmp_path / "broker", tmp_path / "srv"
    server = make_broker(
        extra=(
            "per_listener_settings false\n"
            f"password_file {broker_dir / 'passwd'}\nacl_file {broker_dir / 'acl'}\n"
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {broker_dir / 'ca.crt'}\ncertfile {srv / 'server.crt'}\n"
            f"keyfile {srv / 'server.key'}\n"
            "require_certificate true\nuse_identity_as_username true\n"
        ),
        anonymous=False,
    )
    clients: list[Client] = []

    def login(who: str) -> Client:
        folder = tmp_path / ("central" if who == "central" else f"b/{who}")
        cert = folder / ("client.crt")
        key = folder / ("client.key")
        c = Client(tls_port, tls=(broker_dir / "ca.crt", cert, key))
        clients.append(c)
        return c

    login.server = server  # type: ignore[attr-defined]
    yield login
    for c in clients:
        c.close()


def test_bundle_uses_the_certificate(run, tmp_path: Path, tls_broker) -> None:
    bundle = tmp_path / "b" / "gw-c"
    config = load_config(bundle / "agent.yaml")
    assert config.mqtt.username is None and config.mqtt.tls is not None
    assert config.mqtt.tls.cert_file == bundle / "client.crt"
    cert = x509.load_pem_x509_certificate((bundle / "client.crt").read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "gw-c"
    assert (bundle / "client.key").stat().st_mode & 0o777 == 0o600
    assert not (bundle / "mqtt.password").exists()
    # no password line for certificate gateways; the ACL still names them
    assert "gw-c:" not in (tmp_path / "broker" / "passwd").read_text()
    assert "user gw-c" in (tmp_path / "broker" / "acl").read_text()


def test_certificate_identity_is_the_acl_username(tls_broker) -> None:
    central = tls_broker("central")
    assert central.connect()
    central.subscribe("pantau/v1/#")
    gw = tls_broker("gw-c")
    assert gw.connect()
    gw.publish("pantau/v1/gw-d/telemetry", b"forged")
    gw.publish("pantau/v1/gw-c/telemetry", b"mine")
    assert central.expect() == ("pantau/v1/gw-c/telemetry", b"mine")
    assert central.nothing()


def test_no_certificate_no_connection(tls_broker, tmp_path: Path) -> None:
    assert tls_broker("gw-c").connect()
    c = Client(tls_broker("gw-d").port, tls=(tmp_path / "broker" / "ca.crt", None, None))
    try:
        assert not c.connect(timeout=2)
    finally:
        c.close()
