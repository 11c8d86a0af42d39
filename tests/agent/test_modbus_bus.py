"""One bus per line: Modbus RTU units on one serial port (and units behind one Modbus
TCP gateway) share one connection and take turns; conflicting settings are refused.

The line is a pty pair with pymodbus's own RTU server on the far end, as in the field
one RS-485 adapter with several sensors on it.
"""

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agent.clock import SystemClock
from agent.config import AgentConfig
from agent.devices import build_devices
from agent.drivers import Sample
from agent.drivers._modbus_bus import silent_interval
from agent.poller import Poller
from tests.agent.test_faults import AgentProcess, Recorder, wait_for, write_config
from wire.configfile import ConfigError
from wire.structs import convert

RADAR = "river/radar-level-mm"
SERVED = {1: [1500, 2500, 0], 2: [1510, 2490, 0], 3: [1520, 2480, 0]}  # level, air gap (mm)


def expected(unit: int) -> dict[str, float]:
    level, gap, _ = SERVED[unit]
    return {"level_cm": level / 10, "air_gap_cm": gap / 10, "status": 0}


def rtu(port: str, unit: int, **settings: Any) -> dict[str, Any]:
    return {"transport": "rtu", "port": port, "baudrate": 19200, "unit": unit, **settings}


def sonar(device_id: str, **more: Any) -> dict[str, Any]:
    """A line-printing ultrasonic sensor (no address: it needs its port alone) on /dev/ttyS0."""
    entry = {"id": device_id, "profile": "river/ultrasonic-serial", **more}
    return {**entry, "connection": {"port": "/dev/ttyS0"}}


def config_of(devices: list[dict[str, Any]]) -> AgentConfig:
    return convert({"gateway": {"id": "gw-test-01", "site": "s"}, "devices": devices}, AgentConfig)


def test_silent_interval_is_three_and_a_half_characters() -> None:
    assert silent_interval(9600) == pytest.approx(3.5 * 11 / 9600)  # 4.0 ms
    assert silent_interval(19200) == pytest.approx(3.5 * 11 / 19200)
    assert silent_interval(115200) == 0.00175  # fixed above 19200 baud


def test_units_on_one_port_share_one_bus_and_tcp_units_one_gateway() -> None:
    devices = build_devices(
        config_of(
            [
                {"id": f"radar-{u}", "profile": RADAR, "connection": rtu("/dev/ttyUSB0", u)}
                for u in (1, 2, 3)
            ]
            + [
                {"id": "other-line", "profile": RADAR, "connection": rtu("/dev/ttyUSB1", 1)},
                *(
                    {
                        "id": f"gw-{u}",
                        "profile": RADAR,
                        "connection": {"transport": "tcp", "host": "10.0.0.5", "unit": u},
                    }
                    for u in (1, 2)
                ),
            ]
        )
    )
    buses = [d.driver._bus for d in devices]  # type: ignore[attr-defined]
    assert buses[0] is buses[1] is buses[2]
    assert buses[3] is not buses[0]
    assert buses[4] is buses[5] and buses[4] is not buses[0]


def test_conflicting_serial_settings_name_both_devices() -> None:
    with pytest.raises(ConfigError) as info:
        build_devices(
            config_of(
                [
                    {"id": "level-a", "profile": RADAR, "connection": rtu("/dev/ttyUSB0", 1)},
                    {
                        "id": "level-b",
                        "profile": RADAR,
                        "connection": rtu("/dev/ttyUSB0", 2, baudrate=9600, parity="E"),
                    },
                ]
            )
        )
    (problem,) = info.value.problems
    assert "devices[1] (level-b) and devices[0] (level-a)" in problem
    assert "serial port /dev/ttyUSB0" in problem
    assert "baudrate 9600 vs 19200" in problem and "parity E vs N" in problem


def test_two_line_printing_sensors_or_a_sensor_and_modbus_on_one_port_are_refused() -> None:
    devices = [
        sonar("sonar-1"),
        sonar("sonar-2"),
        {"id": "radar-1", "profile": RADAR, "connection": rtu("/dev/ttyS0", 1)},
    ]
    with pytest.raises(ConfigError) as info:
        build_devices(config_of(devices))
    first, second = info.value.problems
    assert "devices[1] (sonar-2) and devices[0] (sonar-1) both use serial port /dev/ttyS0" in first
    assert "sonar-2 has no address (it can't share a line): it needs the port alone" in first
    assert "devices[2] (radar-1) and devices[0] (sonar-1)" in second


def tap(device_id: str, pos_port: str, printer_port: str) -> dict[str, Any]:
    connection = {"transport": "serial", "pos_port": pos_port, "printer_port": printer_port}
    return {"id": device_id, "profile": "tapping-box/escpos-generic", "connection": connection}


def test_a_tapping_box_port_used_by_another_device_is_refused_naming_both() -> None:
    devices = [
        tap("tap-1", "/dev/ttyUSB0", "/dev/ttyUSB1"),
        tap("tap-2", "/dev/ttyUSB2", "/dev/ttyUSB1"),
        {"id": "radar-1", "profile": RADAR, "connection": rtu("/dev/ttyUSB0", 1)},
    ]
    with pytest.raises(ConfigError) as info:
        build_devices(config_of(devices))
    problems = info.value.problems
    assert len(problems) == 2
    assert "devices[1] (tap-2) and devices[0] (tap-1) both use serial port /dev/ttyUSB1" in (
        problems[0] + problems[1]
    )
    assert "devices[2] (radar-1) and devices[0] (tap-1) both use serial port /dev/ttyUSB0" in (
        problems[0] + problems[1]
    )
    # two taps on their own ports are fine
    fine = [
        tap("tap-1", "/dev/ttyUSB0", "/dev/ttyUSB1"),
        tap("tap-2", "/dev/ttyUSB2", "/dev/ttyUSB3"),
    ]
    assert [d.id for d in build_devices(config_of(fine))] == ["tap-1", "tap-2"]


def test_disabled_devices_claim_no_port() -> None:
    devices = [sonar("sonar-1"), sonar("sonar-2", enabled=False)]
    assert [d.id for d in build_devices(config_of(devices))] == ["sonar-1"]


def test_a_dead_unit_costs_the_others_its_own_timeout_only(
    no_leaked_threads: None, modbus_server: Any, pty_bridge: Any
) -> None:
    """The dead unit is first in line every tick: the live units wait for its 0.3 s
    timeout and nothing more, and every one of their readings is good and right."""
    modbus_server(
        {u: {"holding": {0: regs}} for u, regs in SERVED.items()},
        transport="rtu",
        serial_port=pty_bridge.a,
    )
    sections = [
        {"id": "dead-9", "profile": RADAR, "timeout": "300ms", "connection": rtu(pty_bridge.b, 9)}
    ] + [
        {
            "id": f"radar-{u}",
            "profile": RADAR,
            "timeout": "300ms",
            "connection": rtu(pty_bridge.b, u),
        }
        for u in SERVED
    ]
    devices = build_devices(config_of(sections))
    done: dict[str, list[float]] = {d.id: [] for d in devices}
    readings: dict[str, list[list[Sample]]] = {d.id: [] for d in devices}

    async def run() -> None:
        pollers = [
            Poller(d.driver, lambda dev, ts, s: readings[dev].append(s), SystemClock())
            for d in devices
        ]

        async def timed(poller: Poller, at: float) -> None:
            await poller.poll(at)
            done[poller.device_id].append(time.monotonic() - start)

        try:
            for _ in range(4):
                start = time.monotonic()
                await asyncio.gather(*(timed(p, time.time()) for p in pollers))
        finally:
            for poller in pollers:
                await poller._close()

    asyncio.run(run())
    for dead in readings["dead-9"]:
        assert {s.quality for s in dead} == {"bad"}
    for unit in SERVED:
        name = f"radar-{unit}"
        assert len(readings[name]) == 4
        for samples in readings[name]:
            assert {s.metric: s.value for s in samples} == pytest.approx(expected(unit)), samples
            assert {s.quality for s in samples} == {"good"}
        # its own poll is a few ms; the wait is the dead unit's 0.3 s, never a timeout of its own
        assert max(done[name]) < 0.3 + 0.35, done


def test_units_behind_one_modbus_tcp_gateway_share_one_connection(
    no_leaked_threads: None, modbus_server: Any
) -> None:
    server = modbus_server({u: {"holding": {0: regs}} for u, regs in SERVED.items()})
    tcp = {"transport": "tcp", "host": "127.0.0.1", "port": server.port}
    devices = build_devices(
        config_of(
            [
                {"id": f"radar-{u}", "profile": RADAR, "connection": {**tcp, "unit": u}}
                for u in SERVED
            ]
        )
    )
    readings: dict[str, list[list[Sample]]] = {d.id: [] for d in devices}
    clients: set[int] = set()

    async def run() -> None:
        pollers = [
            Poller(d.driver, lambda dev, ts, s: readings[dev].append(s), SystemClock())
            for d in devices
        ]
        try:
            for _ in range(3):
                await asyncio.gather(*(p.poll(time.time()) for p in pollers))
                clients.update(id(d.driver._client) for d in devices)  # type: ignore[attr-defined]
        finally:
            for poller in pollers:
                await poller._close()

    asyncio.run(run())
    assert len(clients) == 1, "one TCP connection for the three units"
    assert devices[0].driver._bus.requests == 9  # type: ignore[attr-defined]
    for unit in SERVED:
        for samples in readings[f"radar-{unit}"]:
            assert {s.metric: s.value for s in samples} == pytest.approx(expected(unit))


def test_three_units_on_one_pty_line_polled_every_second_by_pantau_agent_run(
    no_leaked_threads: None, modbus_server: Any, pty_bridge: Any, broker: Any, tmp_path: Path
) -> None:
    """One ``pantau-agent run``, three RTU units on one line at 1 Hz for 15 s: every unit
    delivers at least 95 % good readings of its own values, one per tick."""
    seconds = 15
    modbus_server(
        {u: {"holding": {0: regs}} for u, regs in SERVED.items()},
        transport="rtu",
        serial_port=pty_bridge.a,
    )
    gateway = f"gw-bus-{time.time_ns() % 10**9}"
    config = write_config(
        tmp_path / "agent.yaml",
        gateway,
        broker.port,
        devices=[
            {
                "id": f"radar-{u}",
                "profile": RADAR,
                "interval": "1s",
                "timeout": "500ms",
                "connection": rtu(pty_bridge.b, u),
            }
            for u in SERVED
        ],
        log={"level": "INFO"},
    )
    recorder = Recorder(broker.port, gateway, f"rec-{gateway}", persistent=False).start()
    agent = AgentProcess(config)
    try:
        begin = time.time()
        time.sleep(seconds)
        first, last = int(begin) + 2, int(begin) + seconds - 1  # ticks surely in the run
        wait_for(
            lambda: any(
                r["ts"] >= last * 1000
                for m in list(recorder.messages["telemetry"])
                for r in m["readings"]
            ),
            10,
            "the last tick's readings",
        )
    finally:
        assert agent.stop() == 0, agent.log()
        recorder.stop()
    ticks = range(first, last + 1)
    for unit in SERVED:
        device = f"radar-{unit}"
        rows = [
            r
            for m in recorder.messages["telemetry"]
            for r in m["readings"]
            if r["device"] == device and first * 1000 <= r["ts"] <= last * 1000
        ]
        good_ticks = set()
        for tick in ticks:
            at = [r for r in rows if r["ts"] == tick * 1000]
            values = {r["metric"]: r["value"] for r in at if r["quality"] == "good"}
            if values and values == pytest.approx(expected(unit)):
                good_ticks.add(tick)
        assert {r["ts"] % 1000 for r in rows} <= {0}, "readings stamped off the 1 s grid"
        share = len(good_ticks) / len(ticks)
        assert share >= 0.95, f"{device}: {share:.0%} good ({rows}); log: {agent.log()[-3000:]}"
    assert "skipped" not in agent.log()
