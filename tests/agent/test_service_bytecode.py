"""The agent as its systemd unit runs it: the unit's ``Environment=`` lines (lean ``-OO``
bytecode cached in the service's cache directory), filled by ``check --offline`` the way
install.sh does. Every driver must work without docstrings and asserts."""

import http.server
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.agentunit import UNIT, pantau_agent, unit_environment, warm
from scripts.services import Mosquitto
from scripts.snmpd import Snmpd
from tests.agent.conftest import PtyPort
from tests.agent.snmp_fixtures import snmpd_fixture, uptime  # noqa: F401
from tests.agent.test_faults import ROOT, AgentProcess, Recorder, wait_for, write_config
from tests.agent.test_network_snmp import UPS_ON_BATTERY, v2c


def bytecode(cache: Path) -> dict[str, float]:
    """Every cached file under the unit's bytecode folder and its mtime."""
    return {str(p.relative_to(cache)): p.stat().st_mtime for p in cache.rglob("*.pyc")}


@pytest.fixture
def unit_env(tmp_path: Path) -> dict[str, str]:
    env = unit_environment(tmp_path / "cache")
    env["PYTHONDONTWRITEBYTECODE"] = ""  # as under systemd: the agent may write its cache
    return env


def test_the_unit_asks_for_lean_bytecode_in_its_cache_directory(tmp_path: Path) -> None:
    env = unit_environment(tmp_path)
    assert env["PYTHONOPTIMIZE"] == "2"
    assert env["PYTHONPYCACHEPREFIX"] == f"{tmp_path}/bytecode"
    text = UNIT.read_text()
    assert "CacheDirectory=pantau-agent\n" in text
    assert "ProtectSystem=strict\n" in text  # why the cache cannot live next to the code


def test_unit_environment_reads_quoted_and_several_assignments(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text(
        '[Service]\nEnvironment=A=1 "B=two words"\nEnvironment=C=/var/cache/pantau-agent/x\n'
    )
    assert unit_environment(tmp_path / "c", unit) == {
        "A": "1",
        "B": "two words",
        "C": f"{tmp_path}/c/x",
    }
    unit.write_text("[Service]\nEnvironment=JUSTANAME\n")
    with pytest.raises(ValueError, match="JUSTANAME"):
        unit_environment(tmp_path, unit)


def test_check_fills_the_cache_with_all_that_run_imports(
    tmp_path: Path, unit_env: dict[str, str], make_broker: Any, modbus_server: Any
) -> None:
    broker: Mosquitto = make_broker()
    server = modbus_server({1: {"holding": {0: [1234, 3766, 0]}}})
    gateway = f"gw-lean-{uuid.uuid4().hex[:8]}"
    devices = [
        {"id": "counter-1", "profile": "simulated/counter", "interval": "100ms"},
        {
            "id": "radar-1",
            "profile": "river/radar-level-mm",
            "interval": "200ms",
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": server.port},
        },
    ]
    config = write_config(tmp_path / "agent.yaml", gateway, broker.port, devices=devices)
    cache = tmp_path / "cache" / "bytecode"
    warm(config, unit_env)
    warmed = bytecode(cache)
    names = "\n".join(warmed)
    modules = ("agent/app.", "paho/mqtt/client.", "pymodbus/client/tcp.", "asyncio/base_events.")
    for module in modules:
        assert f"{module}cpython-311.opt-2.pyc" in names, module
    assert ".cpython-311.pyc" not in names  # only -OO bytecode

    recorder = Recorder(broker.port, gateway, f"rec-{gateway}").start()
    try:
        agent = AgentProcess(config, unit_env)
        try:
            wait_for(lambda: len(recorder.values()) >= 5, 20, "counter readings")
            wait_for(lambda: radar_readings(recorder) >= 3, 20, "radar readings")
        finally:
            assert agent.stop() == 0, agent.log()
    finally:
        recorder.stop()
    assert bytecode(cache) == warmed  # run compiled nothing the check had not


def radar_readings(recorder: Recorder) -> int:
    with recorder.lock:
        batches = recorder.messages["telemetry"]
        return sum(
            r["device"] == "radar-1" and r["quality"] == "good"
            for batch in batches
            for r in batch["readings"]
        )


def test_check_names_a_runtime_library_that_does_not_import(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'paho':\n"
        "            raise ImportError('paho is not installed')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    config = write_config(tmp_path / "agent.yaml", "gw-broken-install", 1883)
    result = pantau_agent(
        "check", "--offline", "-c", str(config), env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    )
    assert result.returncode == 1
    assert "error: install: cannot import agent.app: paho is not installed" in result.stderr


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def sonar(pty_port: PtyPort) -> Iterator[str]:
    """An ultrasonic sensor on a pty printing R1234<CR> every 50 ms; its port's path."""
    stop = threading.Event()

    def talk() -> None:
        while not stop.wait(0.05):
            pty_port.write(b"R1234\r")
            pty_port.read_available()  # nothing is sent to it, keep the line drained

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    yield pty_port.path
    stop.set()
    thread.join(5)


def test_every_polled_driver_works_on_the_units_bytecode(
    tmp_path: Path,
    unit_env: dict[str, str],
    modbus_server: Any,
    snmpd: Snmpd,
    web: int,
    listener: int,
    sonar: str,
) -> None:
    server = modbus_server({1: {"holding": {0: [1234, 3766, 0]}}})
    snmpd.set_values({**uptime(1000), **UPS_ON_BATTERY["served"]})
    devices = [
        {
            "id": "radar-1",
            "profile": "river/radar-level-mm",
            "connection": {"transport": "tcp", "host": "127.0.0.1", "port": server.port},
        },
        {"id": "ups-1", "profile": "network/snmp-ups", "timeout": "2s", "connection": v2c(snmpd)},
        {
            "id": "app-1",
            "profile": "network/http",
            "connection": {"url": f"http://127.0.0.1:{web}/"},
        },
        {
            "id": "port-1",
            "profile": "network/tcp-port",
            "connection": {"host": "127.0.0.1", "port": listener},
        },
        {"id": "lo-1", "profile": "network/ping", "connection": {"host": "127.0.0.1"}},
        {"id": "sonar-1", "profile": "river/ultrasonic-serial", "connection": {"port": sonar}},
    ]
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"id": "gw-lean-poll", "site": "lab"},
                "buffer": {"path": str(tmp_path / "buffer.db")},
                "devices": devices,
            }
        )
    )
    warm(config, unit_env)
    result = pantau_agent("poll", "--once", "-c", str(config), env=unit_env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    got = {(r["device"], r["metric"]): r for r in rows}
    assert {r["device"] for r in rows} == {d["id"] for d in devices}
    assert got["radar-1", "level_cm"]["value"] == 123.4
    assert got["ups-1", "battery_voltage"]["value"] == 54.5
    assert got["sonar-1", "air_gap_cm"]["value"] == 123.4
    for device in ("app-1", "port-1", "lo-1"):
        assert got[device, "up"]["value"] == 1, got[device, "up"]
