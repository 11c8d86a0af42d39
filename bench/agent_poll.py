"""Polling benchmark: 10 Modbus TCP devices x 10 registers at 10 Hz from one pymodbus server.

The server runs in its own process (pymodbus's ModbusTcpServer, units 1..10); this
process runs the agent's real pollers (agent.poller.Poller + the modbus driver, one
TCP connection per device, as on a gateway). We count the good readings delivered
for every scheduled tick, and the CPU and memory of the polling process.

    .venv/bin/python -m bench.agent_poll --seconds 30

Goal: 100 % of the scheduled readings delivered. The last line is JSON.
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEVICES = 10
REGISTERS = 10


def serve(port: int) -> None:
    """The device side: one pymodbus TCP server answering units 1..DEVICES."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    def device(unit: int) -> SimDevice:
        def bits() -> list[SimData]:
            return [SimData(0, values=[False], datatype=DataType.BITS)]

        def regs(values: list[int]) -> list[SimData]:
            return [SimData(0, values=values, datatype=DataType.REGISTERS)]

        values = [unit * 100 + i for i in range(REGISTERS)]
        return SimDevice(id=unit, simdata=(bits(), bits(), regs(values), regs([0])))

    async def main() -> None:
        server = ModbusTcpServer(
            [device(u) for u in range(1, DEVICES + 1)], address=("127.0.0.1", port)
        )
        await server.serve_forever()

    asyncio.run(main())


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of another process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_profile(folder: Path) -> None:
    (folder / "bench").mkdir(parents=True, exist_ok=True)
    points = "\n".join(
        f"  - {{metric: r{i}, register: {i}, type: uint16}}" for i in range(REGISTERS)
    )
    (folder / "bench" / "ten-registers.yaml").write_text(
        f"# {REGISTERS} adjacent holding registers, for bench/agent_poll\n"
        f"driver: modbus\npoints:\n{points}\n",
        encoding="utf-8",
    )


async def measure(port: int, seconds: float, interval: float, profiles: Path) -> dict:
    from agent.clock import SystemClock, next_tick
    from agent.config import DeviceSection
    from agent.devices import build_device
    from agent.drivers import Sample
    from agent.poller import Poller

    devices = [
        build_device(
            DeviceSection(
                id=f"dev{unit}",
                profile="bench/ten-registers",
                interval=interval,
                connection={"transport": "tcp", "host": "127.0.0.1", "port": port, "unit": unit},
            ),
            profiles,
            "bench",
        )
        for unit in range(1, DEVICES + 1)
    ]
    good: dict[str, set[int]] = {d.id: set() for d in devices}
    wrong = 0
    bad = 0

    def sink(device: str, ts: int, samples: list[Sample]) -> None:
        nonlocal wrong, bad
        unit = int(device[3:])
        for s in samples:
            if s.quality != "good":
                bad += 1
            elif s.value != unit * 100 + int(s.metric[1:]):
                wrong += 1
            else:
                good[device].add(ts * 100 + int(s.metric[1:]))

    clock = SystemClock()
    pollers = [Poller(d.driver, sink, clock) for d in devices]
    # warm up: connect every device before the measured window starts
    for p in pollers:
        await p.poll(clock.time())
    for d in good.values():
        d.clear()
    bad = 0
    window_start = next_tick(clock.time() + 0.5, interval)
    window_end = window_start + seconds
    first_tick = next_tick(window_start - interval / 2, interval)
    scheduled_ticks = [
        round((first_tick + k * interval) * 1000) for k in range(round(seconds / interval))
    ]
    await clock.sleep_until(window_start - interval / 2)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await clock.sleep_until(window_end + 0.5)  # let the last polls finish
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.monotonic() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    wanted = set(scheduled_ticks)
    delivered = sum(1 for readings in good.values() for key in readings if key // 100 in wanted)
    scheduled = len(scheduled_ticks) * DEVICES * REGISTERS
    return {
        "devices": DEVICES,
        "registers": REGISTERS,
        "rate_hz": round(1 / interval, 3),
        "seconds": seconds,
        "scheduled": scheduled,
        "delivered": delivered,
        "delivered_pct": round(100 * delivered / scheduled, 2),
        "bad_readings": bad,
        "wrong_values": wrong,
        "skipped_ticks": sum(p.health.skipped_ticks for p in pollers),
        "cpu_pct": round(100 * cpu / wall, 1),
        "rss_mib": round(rss_kib() / 1024, 1),
        "max_rss_mib": round(max(usage1.ru_maxrss, rss_kib()) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0, help="polls per second per device")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    from scripts.services import free_port, wait_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.agent_poll", "--serve", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc=server)
        server_cpu0 = cpu_seconds_of(server.pid)
        with tempfile.TemporaryDirectory() as tmp:
            write_profile(Path(tmp))
            started = time.monotonic()
            result = asyncio.run(measure(port, args.seconds, 1 / args.rate, Path(tmp)))
            elapsed = time.monotonic() - started
        result["server_cpu_pct"] = round(
            100 * (cpu_seconds_of(server.pid) - server_cpu0) / elapsed, 1
        )
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    rows = [
        ("devices x registers", f"{result['devices']} x {result['registers']}"),
        ("rate per device", f"{result['rate_hz']:g} Hz"),
        ("window", f"{result['seconds']:g} s"),
        ("scheduled readings", str(result["scheduled"])),
        ("delivered (good, right value)", f"{result['delivered']} ({result['delivered_pct']} %)"),
        ("bad readings", str(result["bad_readings"])),
        ("wrong values", str(result["wrong_values"])),
        ("skipped ticks", str(result["skipped_ticks"])),
        ("polling process CPU", f"{result['cpu_pct']} % of one core"),
        ("polling process RSS", f"{result['rss_mib']} MiB (peak {result['max_rss_mib']})"),
        ("server process CPU", f"{result['server_cpu_pct']} % of one core"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(json.dumps({"bench": "agent_poll", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
