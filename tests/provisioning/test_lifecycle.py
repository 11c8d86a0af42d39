"""Revoke and rotate a gateway's credentials, proven against a REAL mosquitto running
the very mosquitto.conf, passwd, acl and crl.pem that ``broker-config`` regenerates."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scripts.services import find_binary, free_port, wait_port
from tests.provisioning.mqtt_helpers import Client


class Broker:
    """mosquitto run from the generated config in ``conf_dir`` (listeners on loopback)."""

    def __init__(self, run, tmp_path: Path, tls: bool = False) -> None:
        self.run = run
        self.dir = tmp_path / "broker"
        self.persist = tmp_path / "persist"
        self.persist.mkdir()
        self.port = free_port()
        self.tls_port = free_port()
        self.log = tmp_path / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        if tls:
            r = run("ca", "server-cert", "127.0.0.1", "localhost", "--out", self.dir)
            assert r.rc == 0, r.err

    def configure(self) -> str:
        r = self.run(
            "broker-config",
            "--out",
            self.dir,
            "--conf-dir",
            self.dir,
            "--port",
            self.port,
            "--tls-port",
            self.tls_port,
            "--bind",
            "127.0.0.1",
            "--persistence-dir",
            f"{self.persist}/",
        )
        assert r.rc == 0, r.err
        user = "user root\n" if os.geteuid() == 0 else ""
        (self.dir.parent / "run.conf").write_text(user + (self.dir / "mosquitto.conf").read_text())
        return r.out

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [find_binary("mosquitto"), "-c", str(self.dir.parent / "run.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """What `systemctl reload mosquitto` does: SIGHUP re-reads passwd, acl (and CRL).
        Returns once mosquitto has said so: it logs "Reloading config." and re-reads
        everything in the same turn of its (single-threaded) loop, before it accepts
        another connection."""
        assert self.proc is not None
        before = self._reloads()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self._reloads() == before:
            assert self.proc.poll() is None, "mosquitto exited on SIGHUP"
            assert time.monotonic() < deadline, "mosquitto did not reload within 10 s"
            time.sleep(0.02)
        wait_port(self.port, proc=self.proc)

    def _reloads(self) -> int:
        return self.log.read_text(errors="replace").count("Reloading config.")


@pytest.fixture
def broker(run, tmp_path: Path) -> Iterator:
    made: list[Broker] = []

    def _make(tls: bool = False) -> Broker:
        made.append(Broker(run, tmp_path, tls))
        return made[-1]

    yield _make
    for b in made:
        b.stop()


def login(port: int, user: str, password: str) -> bool:
    client = Client(port, user, password)
    ok = client.connect(timeout=10)
    if ok:
        client.close()
    return ok


def add(run, tmp_path: Path, gateway: str, url: str) -> None:
    r = run("gateway", "add", gateway, "--site", "S", "--broker", url, "--out", tmp_path / "b")
    assert r.rc == 0, r.err


def test_a_revoked_gateway_is_refused_by_mosquitto(run, tmp_path: Path, broker) -> None:
    server = broker()
    for gw in ("gw-a", "gw-b"):
        add(run, tmp_path, gw, f"mqtt://127.0.0.1:{server.port}")
    server.configure()
    server.start()
    password = {
        gw: (tmp_path / "b" / gw / "mqtt.password").read_text().strip() for gw in ("gw-a", "gw-b")
    }
    assert login(server.port, "gw-a", password["gw-a"])

    r = run("gateway", "revoke", "gw-a")
    assert r.rc == 0 and "gw-a: revoked (password)" in r.out and "broker-config" in r.out
    assert "left out (revoked): gw-a" in server.configure()
    assert "gw-a:" not in (server.dir / "passwd").read_text()
    assert "user gw-a\n" not in (server.dir / "acl").read_text()
    server.reload()
    assert not login(server.port, "gw-a", password["gw-a"])
    assert login(server.port, "gw-b", password["gw-b"])
    server.restart()
    assert not login(server.port, "gw-a", password["gw-a"])
    assert "gw-a\tS\trevoked" in run("gateway", "list").out
    assert run("gateway", "revoke", "gw-a").out.startswith("gw-a: revoked already")
    r = run("gateway", "rotate", "gw-a")
    assert r.rc == 1 and "is revoked" in r.err


def test_rotate_gives_a_new_password_and_keeps_the_bundles_devices(
    run, tmp_path: Path, broker
) -> None:
    server = broker()
    add(run, tmp_path, "gw-r", f"mqtt://127.0.0.1:{server.port}")
    bundle = tmp_path / "b" / "gw-r"
    config = yaml.safe_load((bundle / "agent.yaml").read_text())
    config["devices"] = [{"id": "counter-1", "profile": "simulated/counter"}]
    (bundle / "agent.yaml").write_text(yaml.safe_dump(config))
    old = (bundle / "mqtt.password").read_text().strip()
    server.configure()
    server.start()
    assert login(server.port, "gw-r", old)

    r = run("gateway", "rotate", "gw-r")
    assert r.rc == 0, r.err
    assert f"new bundle in {bundle.resolve()}" in r.out
    new = (bundle / "mqtt.password").read_text().strip()
    assert new != old and (bundle / "mqtt.password").stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load((bundle / "agent.yaml").read_text())["devices"] == config["devices"]
    assert login(server.port, "gw-r", old)  # until the broker gets the new config
    server.configure()
    server.reload()
    assert not login(server.port, "gw-r", old)
    assert login(server.port, "gw-r", new)


def tls_login(broker: Broker, folder: Path) -> bool:
    client = Client(
        broker.tls_port,
        tls=(broker.dir / "ca.crt", folder / "client.crt", folder / "client.key"),
    )
    ok = client.connect(timeout=10)
    if ok:
        client.close()
    return ok


def test_revoked_and_replaced_certificates_are_refused_through_the_crl(
    run, tmp_path: Path, broker
) -> None:
    assert run("ca", "init").rc == 0
    server = broker(tls=True)
    for gw in ("gw-c", "gw-d"):
        add(run, tmp_path, gw, f"mqtts://127.0.0.1:{server.tls_port}")
    server.configure()
    conf = (server.dir / "mosquitto.conf").read_text()
    assert f"crlfile {server.dir}/crl.pem" in conf
    server.start()
    assert tls_login(server, tmp_path / "b" / "gw-c")
    old_d = tmp_path / "old-d"
    old_d.mkdir()
    for name in ("client.crt", "client.key"):
        (old_d / name).write_bytes((tmp_path / "b" / "gw-d" / name).read_bytes())

    assert run("gateway", "revoke", "gw-c").rc == 0
    r = run("gateway", "rotate", "gw-d")
    assert r.rc == 0 and "new certificate" in r.out, r.err
    server.configure()
    server.reload()  # mosquitto 2 re-reads the CRL on SIGHUP
    assert not tls_login(server, tmp_path / "b" / "gw-c"), "revoked certificate accepted"
    assert not tls_login(server, old_d), "replaced certificate accepted"
    assert tls_login(server, tmp_path / "b" / "gw-d")

    # re-provisioning the revoked gateway makes a new identity; the old one stays revoked
    old_c = tmp_path / "old-c"
    old_c.mkdir()
    for name in ("client.crt", "client.key"):
        (old_c / name).write_bytes((tmp_path / "b" / "gw-c" / name).read_bytes())
    r = run("gateway", "add", "gw-c", "--site", "S", "--out", tmp_path / "b", "--force")
    assert r.rc == 0, r.err
    server.configure()
    server.restart()
    assert tls_login(server, tmp_path / "b" / "gw-c")
    assert not tls_login(server, old_c)
