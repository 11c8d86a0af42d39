import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from provisioning.passwords import check_password
from tests.provisioning.conftest import TOKEN, Result, secrets_under

BROKER = "mqtt://broker.example:1883"


def add(
    run: Callable[..., Result],
    out: Path,
    *extra: object,
    gateway: str = "gw-1",
    site: str = "A",
    broker: str | None = BROKER,
) -> Result:
    """``pantau-provision gateway add GATEWAY --site SITE [--broker BROKER] EXTRA --out OUT``."""
    broker_args = ("--broker", broker) if broker else ()
    return run("gateway", "add", gateway, "--site", site, *broker_args, *extra, "--out", out)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_bundle_is_a_valid_agent_config_with_a_private_password(run, tmp_path: Path) -> None:
    r = run(
        "gateway",
        "add",
        "gw-ambon-01",
        "--site",
        "Pasar Mardika",
        "--name",
        "Pasar",
        "--lat",
        "-3.69",
        "--lon",
        "128.18",
        "--timezone",
        "WIT",
        "--broker",
        BROKER,
        "--out",
        tmp_path / "bundles",
    )
    assert r.rc == 0, r.err
    bundle = tmp_path / "bundles" / "gw-ambon-01"
    config = load_config(bundle / "agent.yaml")
    assert config.gateway.id == "gw-ambon-01"
    assert config.gateway.site == "Pasar Mardika"
    assert config.mqtt.url == BROKER
    assert config.mqtt.username == "gw-ambon-01"
    password = config.mqtt.secret()
    assert password and len(password) >= 32
    assert password in secrets_under(tmp_path)  # so every run() checks it is never printed
    raw = yaml.safe_load((bundle / "agent.yaml").read_text())
    assert set(raw) == {"gateway", "mqtt", "buffer", "devices"}
    assert raw["mqtt"]["password_file"] == "mqtt.password"
    assert raw["devices"] == []
    for secret in ("agent.yaml", "mqtt.password", "broker/passwd"):
        assert mode(bundle / secret) == 0o600, secret
    # the broker entries: its passwd line checks against the bundle's password
    user, hashed = (bundle / "broker" / "passwd").read_text().strip().split(":", 1)
    assert user == "gw-ambon-01" and check_password(password, hashed)
    assert "topic write pantau/v1/gw-ambon-01/#" in (bundle / "broker" / "acl").read_text()
    info = json.loads((bundle / "gateway.json").read_text())
    assert info["timezone"] == "Asia/Jayapura"
    assert info["location"] == {"lat": -3.69, "lon": 128.18}
    # the state remembers it, with the hash and without the password
    state = tmp_path / "state"
    record = json.loads((state / "gateways" / "gw-ambon-01.json").read_text())
    assert check_password(password, record["password_hash"])
    for path in state.rglob("*"):
        if path.is_file():
            assert password not in path.read_text()
            assert mode(path) == 0o600


def test_adding_the_same_gateway_twice_needs_force(run, tmp_path: Path) -> None:
    args = ("gateway", "add", "gw-1", "--site", "A", "--broker", BROKER, "--out", tmp_path / "b")
    assert run(*args).rc == 0
    first = (tmp_path / "b" / "gw-1" / "mqtt.password").read_text()
    again = run(*args)
    assert again.rc == 1 and "--force" in again.err
    assert (tmp_path / "b" / "gw-1" / "mqtt.password").read_text() == first
    assert run(*args, "--force").rc == 0
    assert (tmp_path / "b" / "gw-1" / "mqtt.password").read_text() != first


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("GW_1", "--site", "A"), "--id: 'GW_1' is not a gateway id"),
        (("gw-1", "--site", "A", "--lat", "91", "--lon", "1"), "--lat: '91' is not a latitude"),
        (("gw-1", "--site", "A", "--lat", "1"), "--lon: give both lat and lon"),
        (("gw-1", "--site", "A", "--timezone", "Europe/Paris"), "--timezone: 'Europe/Paris'"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(run, tmp_path, args, expected) -> None:
    r = run("gateway", "add", *args, "--broker", BROKER, "--out", tmp_path / "b")
    assert r.rc == 1
    assert expected in r.err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_a_bad_broker_url_is_refused(run, tmp_path: Path) -> None:
    r = run("gateway", "add", "gw-1", "--site", "A", "--broker", "http://x", "--out", tmp_path)
    assert r.rc == 1 and "mqtt://host:port" in r.err


def test_broker_url_is_remembered(run, tmp_path: Path) -> None:
    assert add(run, tmp_path / "b", broker=None).rc == 1
    assert add(run, tmp_path / "b").rc == 0
    assert add(run, tmp_path / "b", gateway="gw-2", site="B", broker=None).rc == 0
    assert load_config(tmp_path / "b" / "gw-2" / "agent.yaml").mqtt.url == BROKER


def test_registers_in_central_with_the_token(run, tmp_path: Path, central, monkeypatch) -> None:
    monkeypatch.setenv("PANTAU_CENTRAL_TOKEN", TOKEN)
    r = add(
        run,
        tmp_path / "b",
        "--lat",
        "-5.6",
        "--lon",
        "132.7",
        "--timezone",
        "Asia/Jayapura",
        "--central",
        central.url,
        gateway="gw-tual-02",
        site="Tual",
    )
    assert r.rc == 0, r.err
    assert "registered in central" in r.out
    assert central.requests[-1]["json"] == {
        "id": "gw-tual-02",
        "site": "Tual",
        "name": None,
        "location": {"lat": -5.6, "lon": 132.7},
        "timezone": "Asia/Jayapura",
    }
    # 409: already registered is fine, with a notice
    r = add(
        run, tmp_path / "b", "--central", central.url, "--force", gateway="gw-tual-02", site="Tual"
    )
    assert r.rc == 0 and "already registered in central" in r.out


def test_central_errors_are_clear_and_nothing_is_written(run, tmp_path: Path, central) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token-value\n")
    r = add(run, tmp_path / "b", "--central", central.url, "--token-file", token_file)
    assert r.rc == 1
    assert "HTTP 401" in r.err and "token" in r.err
    assert "wrong-token-value" not in r.err + r.out
    assert not (tmp_path / "b" / "gw-1").exists()
    assert not (tmp_path / "state" / "gateways" / "gw-1.json").exists()

    central.fail_status = 500
    r = add(run, tmp_path / "b", "--central", central.url, "--token", TOKEN)
    assert r.rc == 1 and "HTTP 500" in r.err and "central is unwell" in r.err
    assert not (tmp_path / "b" / "gw-1").exists()


def test_central_unreachable_is_clear(run, tmp_path: Path) -> None:
    from scripts.services import free_port

    r = add(run, tmp_path / "b", "--central", f"http://127.0.0.1:{free_port()}", "--token", TOKEN)
    assert r.rc == 1 and "cannot reach central" in r.err


def test_list_and_register_later(run, tmp_path: Path, central) -> None:
    assert add(run, tmp_path / "b").rc == 0
    listed = run("gateway", "list")
    assert listed.out.startswith("gw-1\tA\tpassword\t")
    r = run("gateway", "register", "gw-1", "--central", central.url, "--token", TOKEN)
    assert r.rc == 0 and "gw-1: registered in central" in r.out
    assert central.gateways["gw-1"]["site"] == "A"


def test_help_and_version(run, capsys) -> None:
    import wire
    from provisioning.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert wire.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("gateway", "broker-config", "ca", "flash", "seed", "label", "batch", "verify"):
        assert command in out
