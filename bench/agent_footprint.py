"""CPU, memory and delivery: the Pantau agent next to thingsboard-gateway 3.8.5.

Both read the same 10 Modbus TCP devices x 10 holding registers from one pymodbus
server (units 1-10) and publish to one mosquitto, at 1 Hz and at 10 Hz, one
program at a time, in the same run. "pantau" runs as its systemd unit runs it (the
unit's Environment= lines: -OO bytecode, cached; warmed by ``check --offline`` as
install.sh does); "pantau-plain" is ``python -m agent run`` without them. For each:
CPU % of one core (utime+stime from /proc over the measuring window), RSS at the
end and its peak (VmHWM), and readings delivered to a subscriber / readings
scheduled in the window.

thingsboard-gateway is installed into its own venv (bench/.work/tb-venv):

    python3 -m venv bench/.work/tb-venv
    bench/.work/tb-venv/bin/pip install thingsboard-gateway==3.8.5

It talks to "ThingsBoard" over MQTT; a small responder here answers its
``getSessionLimits`` RPC (without it the gateway never sends telemetry).

    .venv/bin/python -m bench.agent_footprint [--seconds 30] [--skip-peer]
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from scripts.agentunit import unit_environment, warm
from scripts.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "footprint"
TB_VENV = ROOT / "bench" / ".work" / "tb-venv"
DEVICES = 10
REGISTERS = 10
GATEWAY = "gw-bench-footprint"
TB_TOKEN = "bench-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class ModbusServer:
    """pymodbus's TCP server in a thread: units 1..10, holding registers 0..9."""

    def __init__(self) -> None:
        self.port = free_port()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "ModbusServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("modbus server did not start")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as exc:
            print(f"modbus server failed: {exc!r}", file=sys.stderr)
            raise

    async def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        devices = []
        for unit in range(1, DEVICES + 1):
            values = [unit * 100 + r for r in range(REGISTERS)]
            holding = [SimData(0, values=values, datatype=DataType.REGISTERS)]
            bits = [SimData(60000, values=[False], datatype=DataType.BITS)]
            inputs = [SimData(60000, values=[0], datatype=DataType.REGISTERS)]
            devices.append(SimDevice(id=unit, simdata=(bits, bits, holding, inputs)))
        server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        await server.serve_forever(background=True)
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.shutdown()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class Counter:
    """Counts readings by sample time, from Pantau telemetry and ThingsBoard telemetry."""

    def __init__(self, port: int) -> None:
        self.stamps: list[float] = []
        self.odd = 0
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-footprint-counter")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"pantau/v1/{GATEWAY}/telemetry", qos=1)
        self.client.subscribe("v1/gateway/telemetry", qos=1)
        self.client.subscribe("v1/devices/me/rpc/request/+", qos=1)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.topic.startswith("v1/devices/me/rpc/request/"):
            # the fake ThingsBoard: session limits without any limit
            request_id = msg.topic.rsplit("/", 1)[1]
            limits = {
                "rateLimits": {
                    "messages": "0:0,",
                    "telemetryMessages": "0:0,",
                    "telemetryDataPoints": "0:0,",
                },
                "maxInflightMessages": 1000,
                "maxPayloadSize": 65536,
            }
            client.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps(limits), qos=1)
            return
        try:
            stamps = self._stamps(msg.topic, json.loads(msg.payload))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if not self.odd:
                print(f"unexpected payload on {msg.topic}: {exc!r}: {msg.payload[:300]!r}")
            self.odd += 1
            return
        with self.lock:
            self.stamps.extend(stamps)

    @staticmethod
    def _stamps(topic: str, doc: Any) -> list[float]:
        if topic != "v1/gateway/telemetry":
            return [r["ts"] / 1000 for r in doc["readings"] if r["quality"] == "good"]
        stamps: list[float] = []
        for entries in doc.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if "values" in entry:
                    ts = entry.get("ts", time.time() * 1000) / 1000
                    stamps.extend(ts for _ in entry["values"])
                else:  # {"r0": 100, ...} without a timestamp
                    stamps.extend(time.time() for _ in entry)
        return stamps

    def between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t in self.stamps if start <= t < end)

    def reset(self) -> None:
        with self.lock:
            self.stamps.clear()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> tuple[int, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


Setup = tuple[list[str], dict[str, str]]  # argv, environment added to ours


def pantau_setup(folder: Path, broker_port: int, modbus_port: int, hz: int) -> Setup:
    """As the systemd unit runs it, its bytecode cache filled as install.sh does."""
    argv, _ = plain_setup(folder, broker_port, modbus_port, hz)
    env = unit_environment(folder / "cache")
    warm(Path(argv[-1]), {**env, "PYTHONDONTWRITEBYTECODE": ""})
    return argv, env


def plain_setup(folder: Path, broker_port: int, modbus_port: int, hz: int) -> Setup:
    profiles = folder / "profiles" / "bench"
    profiles.mkdir(parents=True, exist_ok=True)
    points = [
        {"metric": f"r{r}", "register": r, "function": "holding", "type": "int16"}
        for r in range(REGISTERS)
    ]
    (profiles / "ten-registers.yaml").write_text(
        yaml.safe_dump({"driver": "modbus", "points": points})
    )
    config = folder / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"id": GATEWAY, "site": "bench"},
                "mqtt": {"url": f"mqtt://127.0.0.1:{broker_port}"},
                "buffer": {"path": str(folder / "buffer.db")},
                "profiles_dir": str(folder / "profiles"),
                "log": {"level": "WARNING"},
                "devices": [
                    {
                        "id": f"dev-{unit}",
                        "profile": "bench/ten-registers",
                        "interval": 1 / hz,
                        "connection": {
                            "transport": "tcp",
                            "host": "127.0.0.1",
                            "port": modbus_port,
                            "unit": unit,
                        },
                    }
                    for unit in range(1, DEVICES + 1)
                ],
            }
        )
    )
    return [sys.executable, "-m", "agent", "run", "-c", str(config)], {}


def peer_setup(folder: Path, broker_port: int, modbus_port: int, hz: int) -> Setup:
    site = next((TB_VENV / "lib").glob("python3*/site-packages"))
    config_dir = folder / "config"
    shutil.copytree(site / "thingsboard_gateway" / "config", config_dir)
    (folder / "logs").mkdir()
    gateway = json.loads((config_dir / "tb_gateway.json").read_text())
    tb = gateway["thingsboard"]
    tb.update(host="127.0.0.1", port=broker_port, remoteShell=False, remoteConfiguration=False)
    tb["security"] = {"type": "accessToken", "accessToken": TB_TOKEN}
    tb["statistics"]["enable"] = False
    tb["reportStrategy"] = {"type": "ON_RECEIVED"}
    gateway["storage"]["type"] = "memory"
    gateway["connectors"] = [
        {"type": "modbus", "name": "Bench Modbus", "configuration": "bench.json"}
    ]
    (config_dir / "tb_gateway.json").write_text(json.dumps(gateway, indent=2))
    slaves = [
        {
            "host": "127.0.0.1",
            "port": modbus_port,
            "type": "tcp",
            "method": "socket",
            "unitId": unit,
            "deviceName": f"dev-{unit}",
            "deviceType": "default",
            "timeout": 35,
            "byteOrder": "BIG",
            "wordOrder": "BIG",
            "retries": 1,
            "pollPeriod": round(1000 / hz),
            "reportStrategy": {"type": "ON_RECEIVED"},
            "attributes": [],
            "timeseries": [
                {
                    "tag": f"r{r}",
                    "type": "16int",
                    "functionCode": 3,
                    "objectsCount": 1,
                    "address": r,
                }
                for r in range(REGISTERS)
            ],
            "attributeUpdates": [],
            "rpc": [],
        }
        for unit in range(1, DEVICES + 1)
    ]
    (config_dir / "bench.json").write_text(json.dumps({"master": {"slaves": slaves}}, indent=2))
    # logs to files in the work folder, at WARNING, like the Pantau agent
    logs = config_dir / "logs.json"
    text = logs.read_text().replace("./logs/", f"{folder}/logs/").replace('"DEBUG"', '"WARNING"')
    logs.write_text(text.replace('"INFO"', '"WARNING"'))
    argv = [
        str(TB_VENV / "bin" / "python"),
        "-c",
        "from thingsboard_gateway.tb_gateway import main; main()",
    ]
    return argv, {"TB_GW_CONFIG_DIR": str(folder / "config")}


def measure(
    name: str,
    setup: Setup,
    folder: Path,
    counter: Counter,
    hz: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    argv, extra = setup
    env = {**os.environ, **extra}
    log = open(folder / "program.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        cwd=ROOT if name.startswith("pantau") else folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    log.close()
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {folder}/program.log")
        start, cpu0 = time.time(), cpu_seconds(proc.pid)
        time.sleep(seconds)
        end, cpu1 = time.time(), cpu_seconds(proc.pid)
        rss, peak = memory_kib(proc.pid)
        time.sleep(2.5)  # late deliveries (the agent commits once a second)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    scheduled = round(DEVICES * REGISTERS * hz * (end - start))
    delivered = counter.between(start, end)
    return {
        "program": name,
        "hz": hz,
        "cpu_pct": round(100 * (cpu1 - cpu0) / (end - start), 2),
        "rss_mib": round(rss / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "delivered": delivered,
        "scheduled": scheduled,
        "delivered_pct": round(100 * delivered / scheduled, 1) if scheduled else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=8)
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    peer = not args.skip_peer and (TB_VENV / "bin" / "python").exists()
    if not peer and not args.skip_peer:
        print(f"thingsboard-gateway not installed in {TB_VENV}: measuring Pantau only")
    broker = Mosquitto(WORK / "mosquitto").start()
    modbus = ModbusServer().start()
    counter = Counter(broker.port)
    results = []
    try:
        for hz in (1, 10):
            programs = [("pantau", pantau_setup), ("pantau-plain", plain_setup)] + (
                [("thingsboard-gateway", peer_setup)] if peer else []
            )
            for name, setup in programs:
                folder = WORK / f"{name}-{hz}hz"
                folder.mkdir()
                counter.reset()
                try:
                    result = measure(
                        name,
                        setup(folder, broker.port, modbus.port, hz),
                        folder,
                        counter,
                        hz,
                        args.warmup,
                        args.seconds,
                    )
                except RuntimeError as exc:
                    print(f"{name} at {hz} Hz: FAILED: {exc}")
                    continue
                results.append(result)
                print(
                    f"{name:>20} {hz:>2} Hz: CPU {result['cpu_pct']:6.2f} % of a core, "
                    f"RSS {result['rss_mib']:6.1f} MiB (peak {result['peak_rss_mib']:.1f}), "
                    f"delivered {result['delivered']}/{result['scheduled']} "
                    f"({result['delivered_pct']} %)",
                    flush=True,
                )
    finally:
        counter.stop()
        modbus.stop()
        broker.stop()
    by = {(r["program"], r["hz"]): r for r in results}
    ratios = {}
    for program, suffix in (("pantau", ""), ("pantau-plain", "-plain")):
        for hz in (1, 10):
            ours, theirs = by.get((program, hz)), by.get(("thingsboard-gateway", hz))
            if ours and theirs and theirs["cpu_pct"] and theirs["rss_mib"]:
                key = f"{hz}hz{suffix}"
                ratios[key] = {
                    "cpu_ratio": round(ours["cpu_pct"] / theirs["cpu_pct"], 3),
                    "rss_ratio": round(ours["rss_mib"] / theirs["rss_mib"], 3),
                }
                print(
                    f"at {hz} Hz {program} uses {ratios[key]['cpu_ratio']:.2f}x the peer's CPU "
                    f"and {ratios[key]['rss_ratio']:.2f}x its RSS"
                )
    print(
        json.dumps(
            {
                "bench": "agent_footprint",
                "seconds": args.seconds,
                "results": results,
                "ratios": ratios,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
