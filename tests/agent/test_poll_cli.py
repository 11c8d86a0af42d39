"""``pantau-agent poll --once`` end to end: a subprocess against a real pymodbus server."""

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from scripts.agentunit import pantau_agent
from scripts.services import free_port


def agent_yaml(tmp_path: Path, devices: list[dict[str, Any]]) -> Path:
    path = tmp_path / "agent.yaml"
    config = {
        "gateway": {"id": "gw-test-01", "site": "Pintu Air Manggarai"},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "devices": devices,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def poll(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return pantau_agent("poll", "-c", str(config), "--once", *extra)


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def tcp(port: int, unit: int = 1) -> dict[str, Any]:
    return {"transport": "tcp", "host": "127.0.0.1", "port": port, "unit": unit}


def test_poll_prints_one_json_line_per_reading(modbus_server: Any, tmp_path: Path) -> None:
    server = modbus_server(
        {
            1: {"holding": {0: [1234, 3766, 0]}},
            2: {"holding": {0: [0x4016, 0x147B, 0xC61C, 0x3C00]}},
        }
    )
    dead_port = free_port()  # nothing listens here
    config = agent_yaml(
        tmp_path,
        [
            {"id": "radar-1", "profile": "river/radar-level-mm", "connection": tcp(server.port)},
            {
                "id": "level-2",
                "profile": "river/generic-level-float32",
                "connection": tcp(server.port, unit=2),
            },
            {
                "id": "dead-3",
                "profile": "river/radar-level-mm",
                "timeout": "300ms",
                "connection": tcp(dead_port),
            },
            {
                "id": "off-4",
                "profile": "river/radar-level-mm",
                "enabled": False,
                "connection": tcp(dead_port),
            },
        ],
    )
    result = poll(config)
    assert result.returncode == 0, result.stderr
    rows = lines(result.stdout)
    by_key = {(r["device"], r["metric"]): r for r in rows}
    assert len(rows) == 8 and len(by_key) == 8
    for row in rows:
        assert set(row) - {"error"} == {"device", "metric", "value", "unit", "ts", "quality"}
        assert isinstance(row["ts"], int) and row["ts"] > 1_600_000_000_000
    assert by_key["radar-1", "level_cm"] | {"ts": 0} == {
        "device": "radar-1",
        "metric": "level_cm",
        "value": 123.4,
        "unit": "cm",
        "ts": 0,
        "quality": "good",
    }
    assert by_key["level-2", "level_m"]["value"] == 2.345  # the float32, shortest decimal
    assert by_key["level-2", "water_temp_c"]["quality"] == "bad"
    assert "-9999" in by_key["level-2", "water_temp_c"]["error"]
    for metric in ("level_cm", "air_gap_cm", "status"):
        row = by_key["dead-3", metric]
        assert row["quality"] == "bad" and row["value"] is None
        assert f"127.0.0.1:{dead_port}" in row["error"]
    assert not any(r["device"] == "off-4" for r in rows)


def test_poll_one_device(modbus_server: Any, tmp_path: Path) -> None:
    server = modbus_server({1: {"holding": {0: [500, 100, 0]}}})
    config = agent_yaml(
        tmp_path,
        [
            {"id": "a", "profile": "river/radar-level-mm", "connection": tcp(server.port)},
            {"id": "b", "profile": "river/radar-level-mm", "connection": tcp(server.port)},
        ],
    )
    result = poll(config, "--device", "b")
    assert result.returncode == 0, result.stderr
    rows = lines(result.stdout)
    assert {r["device"] for r in rows} == {"b"} and len(rows) == 3
    missing = poll(config, "--device", "nope")
    assert missing.returncode != 0 and "nope" in missing.stderr


def test_config_errors_exit_non_zero_naming_the_field(tmp_path: Path) -> None:
    config = agent_yaml(
        tmp_path,
        [
            {"id": "a", "profile": "river/radar-level-mm", "connection": {"transport": "tcp"}},
            {"id": "b", "profile": "river/no-such-sensor", "connection": {}},
        ],
    )
    result = poll(config)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "devices[0].connection: transport tcp needs host [device a]" in result.stderr
    assert "devices[1].profile" in result.stderr and "no-such-sensor" in result.stderr
