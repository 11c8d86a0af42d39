"""agent.yaml errors name the file and key; secrets come from the environment and never
show in ``check`` output or errors."""

import subprocess
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from scripts.agentunit import pantau_agent
from scripts.services import Mosquitto
from wire.configfile import ConfigError

SECRET = "pw-Zq81-never-print"


def write(path: Path, **top: object) -> Path:
    data = {"gateway": {"id": "gw-conf-01", "site": "ambon"}, **top}
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def check(
    config: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return pantau_agent("check", "-c", str(config), *extra, env=env)


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "agent.yaml", mqtt={"windw": 10}, buffer={"max_mb": 5})
    assert problems(path) == [f"{path}: mqtt.windw: unknown key"]


def test_bad_duration_names_the_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path / "agent.yaml", buffer={"commit_interval": "5 parsecs"})
    [problem] = problems(path)
    assert problem.startswith(f"{path}: buffer.commit_interval: ")
    assert "5 parsecs" in problem


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("buffer", {"commit_interval": "2m"}, "buffer.commit_interval: must be at most 1m"),
        ("buffer", {"max_mb": 0}, "buffer.max_mb: Expected `float` > 0.0 (got 0)"),
        ("mqtt", {"window": 70000}, "mqtt.window: Expected `int` <= 1000 (got 70000)"),
        ("mqtt", {"reconnect_min": "10s", "reconnect_max": "1s"}, "reconnect_max must be at least"),
        ("health", {"interval": "10ms"}, "health.interval: must be at least 100ms (got '10ms')"),
        ("mqtt", {"url": "http://broker:1883"}, "mqtt.url: expected mqtt://host:port"),
    ],
)
def test_section_limits(tmp_path: Path, section: str, values: dict, message: str) -> None:
    path = write(tmp_path / "agent.yaml", **{section: values})
    assert any(message in p for p in problems(path)), problems(path)


def test_env_overrides_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "agent.yaml", mqtt={"username": "gw-conf-01", "password": "from-file"})
    monkeypatch.setenv("PANTAU_MQTT__PASSWORD", SECRET)
    assert load_config(path).mqtt.secret() == SECRET


def test_tls_paths_resolve_next_to_the_config(tmp_path: Path) -> None:
    path = write(
        tmp_path / "agent.yaml", mqtt={"url": "mqtts://b:8883", "tls": {"ca_file": "ca.crt"}}
    )
    config = load_config(path)
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == tmp_path / "ca.crt"
    assert config.mqtt.port == 8883 and config.mqtt.use_tls


def test_check_never_prints_the_password(tmp_path: Path, make_broker) -> None:  # type: ignore[no-untyped-def]
    broker: Mosquitto = make_broker(anonymous=False)  # refuses us: no such user
    path = write(
        tmp_path / "agent.yaml",
        mqtt={"url": broker.url, "username": "gw-conf-01"},
        buffer={"path": str(tmp_path / "b.db")},
    )
    refused = check(path, env={"PANTAU_MQTT__PASSWORD": SECRET})
    assert refused.returncode == 1
    assert "broker refused the connection" in refused.stderr
    bad_type = write(tmp_path / "bad.yaml", mqtt={"password": SECRET, "keepalive": "soon"})
    invalid = check(bad_type, env={"PANTAU_MQTT__PASSWORD": SECRET, "PANTAU_MQTT__WINDOW": "0"})
    assert invalid.returncode == 2
    assert "mqtt.keepalive: invalid duration 'soon'" in invalid.stderr  # the first problem
    window = check(write(tmp_path / "w.yaml"), env={"PANTAU_MQTT__WINDOW": "0"})
    assert window.returncode == 2
    assert "mqtt.window: Expected `int` >= 1 (got '0')" in window.stderr
    for result in (refused, invalid):
        assert SECRET not in result.stdout + result.stderr


def test_a_device_id_used_twice_is_named(tmp_path: Path) -> None:
    device = {"id": "level-1", "profile": "simulated/counter"}
    path = write(tmp_path / "agent.yaml", devices=[device, {**device, "interval": "5s"}])
    assert problems(path) == [f"{path}: devices: device id 'level-1' is used twice"]
