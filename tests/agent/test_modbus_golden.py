"""Golden cases against pymodbus's own server: over TCP, and over RTU through a pty pair.

Each folder under golden/ holds what the device serves and the readings the agent
must make of it (see golden/README.md). The real Poller drives the real driver, so
timeouts and exceptions come out exactly as the gateway reports them.
"""

from pathlib import Path
from typing import Any

import pytest

from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers import Sample
from tests.agent.conftest import (
    case_profile,
    golden_cases,
    load_case,
    run_golden_polls,
)


@pytest.mark.parametrize(("case_dir", "transport"), golden_cases("modbus"))
def test_golden_case(
    no_leaked_threads: None,
    case_dir: Path,
    transport: str,
    modbus_server: Any,
    pty_bridge: Any,
    silent_tcp: Any,
) -> None:
    case = load_case(case_dir)
    units = {int(u): image for u, image in (case.get("serves") or {}).items()}
    silent = bool(case.get("silent", False))
    unit = int(case.get("unit", 1))
    server: Any = None
    if transport == "tcp":
        if not silent:
            server = modbus_server(units)
        port = silent_tcp.port if silent else server.port
        connection = {"transport": "tcp", "host": "127.0.0.1", "port": port, "unit": unit}
    else:
        if not silent:  # silent: nobody on the other end of the line
            server = modbus_server(units, transport="rtu", serial_port=pty_bridge.a)
        connection = {"transport": "rtu", "port": pty_bridge.b, "baudrate": 19200, "unit": unit}
    profiles_dir, profile = case_profile(case_dir, case)
    section = DeviceSection(
        id="dut",
        profile=profile,
        interval=60,
        timeout=float(case.get("timeout", 1.0)),
        connection=connection,
        settings=case.get("settings") or {},
    )
    device = build_device(section, profiles_dir, "case.yaml")
    if "expect_requests" in case:
        described = [r.describe() for r in device.driver.requests]  # type: ignore[attr-defined]
        assert described == case["expect_requests"]
    delivered: list[tuple[str, int, list[Sample]]] = []

    def before(poll: dict) -> None:
        for set_unit, image in (poll.get("set") or {}).items():
            for function, cells in image.items():
                for address, values in cells.items():
                    assert server is not None, "set needs a server"
                    server.set(int(set_unit), function, int(address), values)

    run_golden_polls(
        device, case_dir, case, before=before, deliver=lambda d, ts, s: delivered.append((d, ts, s))
    )
    assert [(d, ts) for d, ts, _ in delivered] == [
        ("dut", int(p["at"]) * 1000) for p in case["polls"]
    ]
