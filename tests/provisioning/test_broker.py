"""The generated passwd and ACL files in a REAL mosquitto."""

import subprocess
from pathlib import Path

import pytest

from scripts.services import find_binary, free_port, wait_port
from tests.provisioning.mqtt_helpers import Client


@pytest.fixture
def provisioned(run, tmp_path: Path, make_broker):
    out = tmp_path / "bundles"
    for gw in ("gw-a", "gw-b"):
        assert (
            run(
                "gateway",
                "add",
                gw,
                "--site",
                "S",
                "--broker",
                "mqtt://127.0.0.1:1883",
                "--out",
                out,
            ).rc
            == 0
        )
    r = run("broker-config", "--out", tmp_path / "broker")
    assert r.rc == 0, r.err
    broker_dir = tmp_path / "broker"
    server = make_broker(
        extra=f"password_file {broker_dir / 'passwd'}\nacl_file {broker_dir / 'acl'}\n",
        anonymous=False,
    )
    passwords = {gw: (out / gw / "mqtt.password").read_text().strip() for gw in ("gw-a", "gw-b")}
    passwords["pantau-central"] = (broker_dir / "central.password").read_text().strip()
    clients: list[Client] = []

    def login(user: str | None, password: str | None = None) -> Client:
        c = Client(server.port, user, passwords.get(user or "") if password is None else password)
        clients.append(c)
        return c

    login.passwords = passwords  # type: ignore[attr-defined]
    yield login
    for c in clients:
        c.close()


def test_gateway_publishes_under_its_own_topic_and_central_receives(provisioned) -> None:
    central = provisioned("pantau-central")
    assert central.connect()
    assert central.subscribe("pantau/v1/#") == [1]
    gw = provisioned("gw-a")
    assert gw.connect()
    gw.publish("pantau/v1/gw-a/telemetry", b"mine")
    assert central.expect() == ("pantau/v1/gw-a/telemetry", b"mine")


def test_gateway_cannot_publish_as_another_gateway(provisioned) -> None:
    central = provisioned("pantau-central")
    assert central.connect()
    central.subscribe("pantau/v1/#")
    gw = provisioned("gw-a")
    assert gw.connect()
    gw.publish("pantau/v1/gw-b/telemetry", b"forged")
    gw.publish("pantau/v1/gw-a/state", b"marker")
    assert central.expect() == ("pantau/v1/gw-a/state", b"marker")  # the forgery never came
    assert central.nothing()


def test_wrong_password_and_anonymous_are_refused(provisioned) -> None:
    assert not provisioned("gw-a", "not-the-password").connect()
    assert not provisioned("nobody", "x").connect()
    assert not provisioned(None).connect()
    # gw-b's password does not open gw-a
    assert not provisioned("gw-a", provisioned.passwords["gw-b"]).connect()


def test_central_sends_commands_and_only_the_addressed_gateway_reads_them(provisioned) -> None:
    gw_a = provisioned("gw-a")
    assert gw_a.connect()
    assert gw_a.subscribe("pantau/v1/gw-a/cmd") == [1]
    gw_b = provisioned("gw-b")
    assert gw_b.connect()
    gw_b.subscribe("pantau/v1/gw-a/cmd")  # not its commands: nothing will arrive
    central = provisioned("pantau-central")
    assert central.connect()
    central.publish("pantau/v1/gw-a/cmd", b'{"name":"ping"}')
    assert gw_a.expect() == ("pantau/v1/gw-a/cmd", b'{"name":"ping"}')
    assert gw_b.nothing()


def test_gateway_cannot_read_other_gateways_or_telemetry(provisioned) -> None:
    spy = provisioned("gw-b")
    assert spy.connect()
    spy.subscribe("pantau/v1/#")
    gw = provisioned("gw-a")
    assert gw.connect()
    gw.publish("pantau/v1/gw-a/telemetry", b"private")
    assert spy.nothing()


def test_the_mosquitto_conf_snippet_runs_in_real_mosquitto(run, tmp_path: Path) -> None:
    assert (
        run(
            "gateway",
            "add",
            "gw-a",
            "--site",
            "S",
            "--broker",
            "mqtt://127.0.0.1:1883",
            "--out",
            tmp_path / "b",
        ).rc
        == 0
    )
    port = free_port()
    broker_dir = tmp_path / "broker"
    persist = tmp_path / "persist"
    persist.mkdir()
    r = run(
        "broker-config",
        "--out",
        broker_dir,
        "--conf-dir",
        broker_dir,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--persistence-dir",
        f"{persist}/",
    )
    assert r.rc == 0
    conf = (broker_dir / "mosquitto.conf").read_text()
    assert "max_queued_messages 1000000" in conf and "max_inflight_messages 1000" in conf
    user = "user root\n" if __import__("os").geteuid() == 0 else ""
    (tmp_path / "run.conf").write_text(user + conf)
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen(
            [find_binary("mosquitto"), "-c", str(tmp_path / "run.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, proc=proc)
        password = (tmp_path / "b" / "gw-a" / "mqtt.password").read_text().strip()
        c = Client(port, "gw-a", password)
        assert c.connect()
        c.close()
        assert not Client(port, "gw-a", "wrong").connect()
    finally:
        proc.terminate()
        proc.wait(10)


def test_broker_config_keeps_centrals_password_until_rotated(run, tmp_path: Path) -> None:
    assert run("broker-config", "--out", tmp_path / "b1").rc == 0
    first = (tmp_path / "b1" / "passwd").read_text()
    assert first.startswith("pantau-central:$7$101$")
    assert (tmp_path / "b1" / "central.password").stat().st_mode & 0o777 == 0o600
    assert run("broker-config", "--out", tmp_path / "b2").rc == 0
    assert (tmp_path / "b2" / "passwd").read_text() == first
    assert not (tmp_path / "b2" / "central.password").exists()
    assert run("broker-config", "--out", tmp_path / "b3", "--rotate-central").rc == 0
    assert (tmp_path / "b3" / "passwd").read_text() != first


def test_one_central_username_in_example_config_broker_config_and_docs(run, tmp_path: Path) -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    example = yaml.safe_load((root / "deploy" / "central.example.yaml").read_text())
    user = example["mqtt"]["username"]
    assert user == "pantau-central"
    assert example["mqtt"]["client_id"] == user
    assert run("broker-config", "--out", tmp_path / "b").rc == 0
    assert (tmp_path / "b" / "passwd").read_text().startswith(f"{user}:$7$")
    assert f"user {user}\n" in (tmp_path / "b" / "acl").read_text()
    readme = yaml.safe_load(
        (root / "README.md")
        .read_text()
        .split("/etc/pantau/central.yaml`:\n\n```yaml\n")[1]
        .split("```")[0]
    )
    assert readme["mqtt"]["username"] == user
    provisioning = (root / "docs" / "provisioning.md").read_text()
    assert f"username `{user}`" in provisioning
    assert f"ca client-cert {user} " in provisioning


@pytest.mark.parametrize("name", ["central", "pantau-central", "pantau-central-2", "$sys"])
def test_gateway_add_refuses_reserved_names(run, tmp_path: Path, name: str) -> None:
    r = run("gateway", "add", name, "--site", "S", "--broker", "mqtt://127.0.0.1:1883",
            "--out", tmp_path / "b")  # fmt: skip
    assert r.rc != 0
    assert "is reserved" in r.err
    assert not (tmp_path / "b" / name).exists()


def test_broker_config_binds_client_ids_to_usernames_and_saves_on_changes(
    run, tmp_path: Path
) -> None:
    assert run("broker-config", "--out", tmp_path / "b", "--central-workers", "3").rc == 0
    conf = (tmp_path / "b" / "mosquitto.conf").read_text()
    assert conf.count("use_username_as_clientid true") == 1  # the one password listener
    assert "autosave_on_changes true\nautosave_interval 1000\n" in conf
    users = [line.split(":")[0] for line in (tmp_path / "b" / "passwd").read_text().splitlines()]
    assert users == [
        "pantau-central",
        "pantau-central-1",
        "pantau-central-2",
        "pantau-central-alerts",  # the alert leader's feed
    ]
    acl = (tmp_path / "b" / "acl").read_text()
    assert all(f"user {u}\ntopic read pantau/v1/#\n" in acl for u in users)
