"""Every shipped network profile loads; a broken one names its file and field."""

from pathlib import Path

import pytest

from agent.drivers import DeviceContext
from agent.profiles import all_profiles, load_profile, parse_profile
from wire.configfile import ConfigError
from wire.structs import convert

PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"
NETWORK = [name for name in all_profiles(PROFILES) if name.startswith("network/")]
CONNECTIONS = {
    "ping": {"host": "127.0.0.1"},
    "tcp": {"host": "127.0.0.1", "port": 554},
    "http": {"url": "https://127.0.0.1/"},
    "snmp": {"host": "127.0.0.1", "community": "public", "if_index": 2},
    "modbus": {"transport": "tcp", "host": "127.0.0.1"},  # network/tower-power-rectifier
}


def test_the_five_required_profiles_are_shipped() -> None:
    for name in ("ping", "tcp", "http", "snmp-if", "snmp-ups"):
        assert f"network/{name}" in NETWORK


@pytest.mark.parametrize("name", NETWORK)
def test_network_profile_loads_and_lists_its_metrics(name: str) -> None:
    driver_cls, profile = load_profile(PROFILES, name)
    assert profile.description, f"{name}: say what the profile is for"
    connection = convert(CONNECTIONS[driver_cls.name], driver_cls.Connection)
    driver = driver_cls(DeviceContext("d", 60.0, 5.0, 0), profile, connection)
    metrics = [metric for metric, _unit in driver.metrics()]
    assert metrics and len(metrics) == len(set(metrics))


@pytest.mark.parametrize(
    ("name", "old", "new", "field"),
    [
        ("ping", "count: 3", "count: 0", "count"),
        ("ping", "spacing: 200ms", "spacing: soon", "spacing"),
        ("ping", "size: 56", "sizes: 56", "sizes"),
        ("tcp", "port: 554", "port: 70000", "port"),
        ("tcp", 'expect: "^RTSP/1\\\\.0 "', 'expect: "^RTSP/1\\\\.0 ("', "expect"),
        ("http", "method: GET", "method: POST", "method"),
        ("http", "timeout: 5s", "timeout: five", "timeout"),
        ("snmp-if", "kind: rate", "kind: speed", "kind"),
        ("snmp-if", "index: if_index", "index: ifIndex", "index"),
    ],
)
def test_broken_profile_names_file_and_field(
    tmp_path: Path, name: str, old: str, new: str, field: str
) -> None:
    text = (PROFILES / f"network/{name}.yaml").read_text()
    assert old in text, f"test case out of date with network/{name}.yaml"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        parse_profile(path)
    problems = "\n".join(caught.value.problems)
    assert str(path) in problems and field in problems, problems
