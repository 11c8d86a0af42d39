"""Shared-line benchmark: three Modbus RTU units on one pty-backed line at 1 Hz.

The device side is pymodbus's own RTU server (units 1..3) in a child process on one
end of a pty pair; this process runs the agent's real pollers (agent.poller.Poller,
the modbus driver, one shared bus built by agent.devices.build_devices, the system
clock) on the other end, as ``pantau-agent run`` does. For every scheduled tick we
record when the reading was handed over (lateness = handed-over time - tick), so a
poller that drifts off its grid or skips ticks shows.

    .venv/bin/python -m bench.modbus_bus --seconds 60
    .venv/bin/python -m bench.modbus_bus --seconds 60 --dead   # plus a unit that never answers

Goal: every unit 100 % of its ticks, each value right, lateness flat from the first
to the last ten seconds (no drift), 0 skipped ticks. The last line is JSON.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.ptys import PtyBridge

UNITS = {1: [1500, 2500, 0], 2: [1510, 2490, 0], 3: [1520, 2480, 0]}


def serve(path: str) -> None:
    """The device side: pymodbus's RTU server answering units 1..3 on ``path``."""
    from pymodbus.server import ModbusSerialServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    def device(unit: int) -> SimDevice:
        bits = [SimData(60000, values=[False], datatype=DataType.BITS)]
        regs = [SimData(0, values=UNITS[unit], datatype=DataType.REGISTERS)]
        other = [SimData(60000, values=[0], datatype=DataType.REGISTERS)]
        return SimDevice(id=unit, simdata=(bits, bits, regs, other))

    class KnownUnits:
        """SimCore that raises NoSuchIdException for other units (it falls back to unit
        0), so the server, ignoring missing devices, is silent as on a real line."""

        def __init__(self, core: Any) -> None:
            self._core = core

        def __getattr__(self, name: str) -> Any:
            return getattr(self._core, name)

        async def async_getValues(self, device_id: int, *args: Any) -> Any:
            from pymodbus.exceptions import NoSuchIdException

            if device_id not in UNITS:
                raise NoSuchIdException(f"no unit {device_id}")
            return await self._core.async_getValues(device_id, *args)

    async def main() -> None:
        server = ModbusSerialServer(
            [device(u) for u in UNITS], port=path, baudrate=19200, ignore_missing_devices=True
        )
        server.context = KnownUnits(server.context)  # type: ignore[assignment]
        await server.serve_forever()

    asyncio.run(main())


async def poll(line: PtyBridge, seconds: float, dead: bool) -> dict[str, Any]:
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as pantau-agent run does
    from agent.clock import SystemClock
    from agent.config import AgentConfig
    from agent.devices import build_devices
    from agent.poller import Poller
    from wire.structs import convert

    def rtu(unit: int) -> dict[str, Any]:
        return {"transport": "rtu", "port": line.b, "baudrate": 19200, "unit": unit}

    sections = [
        {
            "id": f"radar-{u}",
            "profile": "river/radar-level-mm",
            "interval": "1s",
            "timeout": "300ms",
            "connection": rtu(u),
        }
        for u in UNITS
    ]
    if dead:
        sections.insert(
            0,
            {
                "id": "dead-9",
                "profile": "river/radar-level-mm",
                "interval": "1s",
                "timeout": "300ms",
                "connection": rtu(9),
            },
        )
    config = convert({"gateway": {"id": "gw-bench", "site": "b"}, "devices": sections}, AgentConfig)
    devices = build_devices(config)
    handed: dict[str, list[tuple[float, float, list[Any]]]] = {d.id: [] for d in devices}

    def sink(device: str, ts: int, samples: list[Any]) -> None:
        handed[device].append((ts / 1000, time.time(), samples))

    pollers = [Poller(d.driver, sink, SystemClock()) for d in devices]
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    report: dict[str, Any] = {}
    for poller in pollers:
        rows = handed[poller.device_id]
        if not rows:
            report[poller.device_id] = {"ticks": 0}
            continue
        first, last = rows[0][0], rows[-1][0]
        scheduled = round(last - first) + 1
        unit = int(poller.device_id.rsplit("-", 1)[1])
        want = None
        if unit in UNITS:
            level, gap, status = UNITS[unit]
            want = {"level_cm": level / 10, "air_gap_cm": gap / 10, "status": status}
        good = sum(
            1
            for _, _, samples in rows
            if all(s.quality == "good" for s in samples)
            and (want is None or {s.metric: s.value for s in samples} == want)
        )
        late = [(at_wall - at) * 1000 for at, at_wall, _ in rows]
        head, tail = late[:10], late[-10:]
        report[poller.device_id] = {
            "ticks": len(rows),
            "scheduled": scheduled,
            "good_right": good,
            "skipped_ticks": poller.health.skipped_ticks,
            "off_grid": sum(1 for at, _, _ in rows if abs(at - round(at)) > 1e-6),
            "late_ms_median": round(statistics.median(late), 1),
            "late_ms_max": round(max(late), 1),
            "late_ms_first10_median": round(statistics.median(head), 1),
            "late_ms_last10_median": round(statistics.median(tail), 1),
        }
    report["line_requests"] = devices[0].driver._bus.requests  # type: ignore[attr-defined]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--dead", action="store_true", help="add a unit that never answers")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    line = PtyBridge()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "bench.modbus_bus", "--serve", line.a],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            time.sleep(1.5)  # the server opens its end of the line
            report = asyncio.run(poll(line, args.seconds, args.dead))
        finally:
            server.terminate()
            server.wait(10)
            line.close()
    for name, row in report.items():
        print(f"{name}: {row}")
    report["seconds"] = args.seconds
    report["dead_unit"] = args.dead
    print(json.dumps(report))


if __name__ == "__main__":
    main()
