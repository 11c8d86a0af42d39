"""TLS to a real mosquitto TLS listener: a CA and certificates made here for 127.0.0.1."""

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scripts.agentunit import pantau_agent
from scripts.services import Mosquitto
from tests.agent.test_faults import STARTUP, Recorder, agent_factory, gaps, wait_for, write_config


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def make_ca(folder: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(
    folder: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    server: bool,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(ca[1], hashes.SHA256())
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "pantau-test-ca")
    make_ca(folder, "some-other-ca")
    server_cert, server_key = issue(folder, "broker", ca, server=True)
    client_cert, client_key = issue(folder, "gw-client", ca, server=False)
    return {
        "ca": folder / "pantau-test-ca.crt",
        "other_ca": folder / "some-other-ca.crt",
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


@pytest.fixture
def agents() -> Iterator[Callable]:
    yield from agent_factory()


def tls_broker(
    make: Callable[..., Mosquitto], pki: dict[str, Path], client_cert: bool
) -> Mosquitto:
    extra = (
        f"cafile {pki['ca']}\ncertfile {pki['server_cert']}\nkeyfile {pki['server_key']}\n"
        f"require_certificate {'true' if client_cert else 'false'}\n"
    )
    return make(extra=extra)


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return pantau_agent("check", "-c", str(config))


def tls_config(tmp_path: Path, gateway: str, port: int, **tls: Path) -> Path:
    config = write_config(tmp_path / "agent.yaml", gateway, port)
    data = yaml.safe_load(config.read_text())
    data["mqtt"]["url"] = f"mqtts://127.0.0.1:{port}"
    data["mqtt"]["tls"] = {k: str(v) for k, v in tls.items()}
    config.write_text(yaml.safe_dump(data))
    return config


def test_mqtts_with_the_right_ca_connects_and_a_wrong_ca_is_refused(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], pki: dict[str, Path], gateway_id: str
) -> None:
    broker = tls_broker(make_broker, pki, client_cert=False)
    good = check(tls_config(tmp_path, gateway_id, broker.port, ca_file=pki["ca"]))
    assert good.returncode == 0, good.stderr
    assert f"broker ok: mqtts://127.0.0.1:{broker.port}" in good.stdout
    bad = check(tls_config(tmp_path, gateway_id, broker.port, ca_file=pki["other_ca"]))
    assert bad.returncode == 1
    assert "certificate verify failed" in bad.stderr


def test_client_certificate_auth_delivers_readings_and_no_cert_is_refused(
    tmp_path: Path,
    make_broker: Callable[..., Mosquitto],
    pki: dict[str, Path],
    gateway_id: str,
    agents: Callable,
) -> None:
    broker = tls_broker(make_broker, pki, client_cert=True)
    without = check(tls_config(tmp_path, gateway_id, broker.port, ca_file=pki["ca"]))
    assert without.returncode == 1
    config = tls_config(
        tmp_path,
        gateway_id,
        broker.port,
        ca_file=pki["ca"],
        cert_file=pki["client_cert"],
        key_file=pki["client_key"],
    )
    assert check(config).returncode == 0
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}", persistent=False)
    recorder.client.tls_set(
        ca_certs=str(pki["ca"]), certfile=str(pki["client_cert"]), keyfile=str(pki["client_key"])
    )
    recorder.start()
    agent = agents(config)
    try:
        wait_for(lambda: len(recorder.values()) >= 5, STARTUP, "readings over TLS")
        wait_for(lambda: recorder.latest("state") is not None, 5, "the birth message")
    finally:
        recorder.stop()
    assert agent.stop() == 0
    values = sorted(recorder.values())
    assert len(values) == len(set(values)), "a reading arrived twice"
    # a poller starved of CPU skips ticks (logged, never sampled): only those may be absent
    assert gaps(set(values), values[0], values[-1], agent) == []
    assert "connected to mqtts://" in agent.log()


@pytest.mark.parametrize("field", ["cert_file", "key_file"])
def test_cert_without_key_is_a_config_error(
    tmp_path: Path, pki: dict[str, Path], field: str
) -> None:
    config = tls_config(tmp_path, "gw-tls", 8883, **{field: pki["client_cert"]})
    result = check(config)
    assert result.returncode == 2
    assert "mqtt.tls: cert_file and key_file go together" in result.stderr
