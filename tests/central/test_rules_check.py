"""``pantau-central rules check``: the example rules are clean against the shipped
profiles; a rule no profile can satisfy gets a ``warning:`` naming it, exit code 0."""

from pathlib import Path

import pytest
import yaml

from agent.config import DeviceSection
from agent.devices import build_device
from agent.profiles import all_profiles, default_profiles_dir
from central.alerts.coverage import DRIVER_METRICS, catalog
from central.cli import main
from wire.structs import convert

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "rules.example.yaml"

# a connection each driver accepts, to build the agent's own driver for a profile
CONNECTIONS = {
    "modbus": {"transport": "tcp", "host": "127.0.0.1"},
    "escpos": {"transport": "tcp", "listen": "127.0.0.1:9100", "printer": "127.0.0.1:9101"},
    "snmp": {"host": "127.0.0.1", "community": "public"},
    "serial-ascii": {"port": "/dev/null"},
    "http": {"url": "https://127.0.0.1/"},
    "ping": {"host": "127.0.0.1"},
    "tcp": {"host": "127.0.0.1", "port": 1},
    "simulated": {},
}


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(["rules", "check", *argv])
    out, err = capsys.readouterr()
    assert not err, err
    return rc, out.splitlines()


def test_example_rules_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = check(capsys, str(EXAMPLE))
    assert rc == 0
    assert not [line for line in lines if line.startswith("warning:")], lines
    rules = yaml.safe_load(EXAMPLE.read_text())["rules"]
    assert {f"ok: {r['name']}" for r in rules} <= {line.split(" (")[0] for line in lines}
    assert lines[-1].startswith(f"{EXAMPLE}: {len(rules)} rule(s), 0 warning(s)")


def test_example_river_rules_use_the_metric_river_profiles_report() -> None:
    profiles, _ = catalog([default_profiles_dir()])
    level = [p for p in profiles.values() if p.name.startswith("river/") and "level" in p.name]
    in_metres = [p.name for p in level if "level_m" in p.metrics]
    assert len(in_metres) > len(level) / 2, "most shipped river level profiles report level_m"
    rules = yaml.safe_load(EXAMPLE.read_text())["rules"]
    assert {r["match"]["metric"] for r in rules if r["name"].startswith("river-")} == {"level_m"}


RULES = """
rules:
  - name: river-in-cm
    kind: threshold
    match: {profile: "river/generic-*", metric: level_cm}
    above: 300
  - name: mm-sensor-in-cm
    kind: threshold
    match: {profile: "river/radar-level-mm", metric: level_cm}
    above: 300
  - name: tower-fuel
    kind: threshold
    match: {profile: "network/tower-genset*", metric: fuel_pct}
    below: 20
  - name: any-humidity
    kind: threshold
    match: {metric: "humidity*"}
    above: 90
  - name: routers-down
    kind: threshold
    match: {profile: "network/ping", metric: up}
    below: 1
  - name: all-offline
    kind: offline
"""


def test_a_rule_no_profile_can_satisfy_is_a_warning_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rc, lines = check(capsys, str(rules))
    assert rc == 0, "warnings only: exit 0"
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: river-in-cm: it can never fire: no profile matching 'river/generic-*' "
        "reports a metric matching 'level_cm'",
        "warning: tower-fuel: it can never fire: no profile is named like 'network/tower-genset*'",
        "warning: any-humidity: it can never fire: no profile reports a metric matching "
        "'humidity*'",
    ]
    assert "ok: mm-sensor-in-cm (threshold, warning)" in lines
    assert "ok: routers-down (threshold, warning)" in lines  # a metric the ping driver reports
    assert "ok: all-offline (offline, warning)" in lines
    assert lines[-1].startswith(f"{rules}: 6 rule(s), 3 warning(s)")


def test_profiles_dir_adds_a_gateways_own_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    own = tmp_path / "profiles" / "network"
    own.mkdir(parents=True)
    (own / "tower-genset-abc.yaml").write_text(
        "driver: modbus\npoints:\n  - {metric: fuel_pct, register: 0, function: holding}\n"
    )
    (own / "broken.yaml").write_text("driver: [\n")
    rc, lines = check(capsys, str(rules), "--profiles-dir", str(tmp_path / "profiles"))
    assert rc == 0
    assert "ok: tower-fuel (threshold, warning)" in lines
    assert any(line.startswith("warning:") and "broken.yaml" in line for line in lines)
    assert sum(line.startswith("warning: river-in-cm") for line in lines) == 1


def test_a_broken_rules_file_is_still_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: x, kind: threshold, match: {metric: up}}\n")
    capsys.readouterr()
    assert main(["rules", "check", str(rules)]) == 1
    assert "give exactly one of 'above' or 'below'" in capsys.readouterr().err


@pytest.mark.parametrize("name", all_profiles(default_profiles_dir()))
def test_central_reads_the_same_metrics_as_the_agents_driver(name: str) -> None:
    """Central reads profiles without the drivers; what it reads must match them."""
    folder = default_profiles_dir()
    data = yaml.safe_load((folder / f"{name}.yaml").read_text())
    driver = data["driver"]
    settings = {key: 100 for key in data.get("settings") or {}}  # a bin's depth_cm
    section = convert(
        {"id": "dev-1", "profile": name, "connection": CONNECTIONS[driver], "settings": settings},
        DeviceSection,
    )
    device = build_device(section, folder)
    profiles, problems = catalog([folder])
    assert not problems
    assert profiles[name].metrics == device.driver.reported_metrics()
    if driver in DRIVER_METRICS and not data.get("points"):  # http: + its JSON points
        assert profiles[name].metrics == DRIVER_METRICS[driver]
