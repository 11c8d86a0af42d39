"""End-to-end ingest: simulated gateways → mosquitto → central → InfluxDB, lossless?

    .venv/bin/python -m bench.central_ingest --seconds 30 [--gateways 4] [--no-nodered]

In one run, on this machine, with real mosquitto and InfluxDB in bench/.work/:

1. mosquitto alone: gateways publish QoS 1 batches, one QoS 1 subscriber counts them;
2. InfluxDB alone: 2 writers POST 5,000-line batches (its direct write limit);
3. Pantau: gateways (separate processes) publish QoS 1 telemetry shaped like the
   agent's (``agent/app.py`` ``_publish_telemetry``, 500 readings per message) for
   ``--seconds``; ``python -m central run`` (a child process) writes them; the rate is
   readings / (first publish → last reading stored). Loss and duplicates are counted
   by reading InfluxDB back (COUNT and COUNT(DISTINCT) of every gateway's counter);
4. Node-RED (``npm install node-red node-red-contrib-influxdb`` into bench/.work/):
   mqtt in → json → split readings → join (batch) → influxdb batch out, same traffic.

Prints a table with ratios; the last line is JSON for Pantau:
``{"readings_per_s": ..., "lost": ..., "duplicates": ...}``.
"""

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scripts.services import InfluxDB, Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
BASE_TS = 1_600_000_000_000
BATCH = 500  # readings per message, the agent's default mqtt.batch_size


def _payload(gateway: str, seq: int, first: int, n: int) -> bytes:
    # as the agent sends it: compact JSON readings joined into a batch
    readings = b",".join(
        b'{"device":"d%d","metric":"count","value":%d,"ts":%d,"quality":"good","unit":"n"}'
        % (i % 10, i, BASE_TS + i)
        for i in range(first, first + n)
    )
    head = f'{{"v":1,"gateway":"{gateway}","seq":{seq},"site":"kota-bench","readings":['
    return head.encode() + readings + b"]}"


def _gateway(port: int, gateway: str, seconds: float, result: Any, inflight: int) -> None:
    """A simulated gateway: QoS 1 batches as fast as the broker acks them."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{gateway}")
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    cond = threading.Condition()
    acked = [0]

    def on_publish(*_: Any) -> None:
        with cond:
            acked[0] += 1
            cond.notify()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    sent = 0
    seq = 1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with cond:
            while seq - 1 - acked[0] >= inflight:
                cond.wait(1)
        client.publish(f"pantau/v1/{gateway}/telemetry", _payload(gateway, seq, sent, BATCH), 1)
        seq += 1
        sent += BATCH
    with cond:
        cond.wait_for(lambda: acked[0] >= seq - 1, 60)
    client.disconnect()
    client.loop_stop()
    result.put((gateway, sent))


def _publish(port: int, gateways: list[str], seconds: float) -> tuple[dict[str, int], float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gateway, args=(port, g, seconds, queue, 20)) for g in gateways]
    started = time.monotonic()
    for p in procs:
        p.start()
    sent = dict(queue.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join(10)
    return sent, started


def _query(influx: InfluxDB, q: str, db: str) -> list[dict[str, Any]]:
    result = influx.query(q, db)["results"][0]
    return result.get("series") or []


def _stored(influx: InfluxDB, db: str) -> tuple[int, int]:
    """(points, distinct values per gateway summed) of the counter."""
    series = _query(
        influx,
        'SELECT COUNT("count"), COUNT(DISTINCT("count")) FROM readings GROUP BY "gateway"',
        db,
    )
    # values repeat across the 10 devices of a gateway, so distinct is per device: count that
    per_device = _query(
        influx,
        'SELECT COUNT("count"), COUNT(DISTINCT("count")) FROM readings GROUP BY "gateway","device"',
        db,
    )
    points = sum(s["values"][0][1] for s in series)
    distinct = sum(s["values"][0][2] for s in per_device)
    return points, distinct


def _wait_stored(influx: InfluxDB, db: str, total: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        series = _query(influx, 'SELECT COUNT("count") FROM readings', db)
        points = series[0]["values"][0][1] if series else 0
        if points >= total:
            return time.monotonic()
        if points != last:
            last, last_change = points, time.monotonic()
        elif time.monotonic() - last_change > 20:
            break  # stuck
        time.sleep(0.2)
    return time.monotonic()


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_mosquitto(broker: Mosquitto, gateways: int, seconds: float) -> dict[str, Any]:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got = [0]
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=True)

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        got[0] += 1

    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("pantau/v1/+/telemetry", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    sent, started = _publish(broker.port, [f"mq-{i}" for i in range(gateways)], seconds)
    messages = sum(sent.values()) // BATCH
    deadline = time.monotonic() + 60
    while got[0] < messages and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    sub.disconnect()
    sub.loop_stop()
    return {
        "readings": got[0] * BATCH,
        "seconds": elapsed,
        "lost": sum(sent.values()) - got[0] * BATCH,
    }


def bench_influx(influx: InfluxDB, seconds: float) -> dict[str, Any]:
    import httpx

    influx.create_database("direct")
    count = [0, 0]

    def writer(n: int) -> None:
        i = 0
        with httpx.Client(base_url=influx.url, timeout=60) as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                body = "\n".join(
                    f"readings,device=d{j % 10},gateway=direct-{n} count={j}.0 {BASE_TS + j}"
                    for j in range(i, i + 5000)
                ).encode()
                resp = client.post(
                    "/write", params={"db": "direct", "precision": "ms"}, content=body
                )
                if resp.status_code == 204:
                    count[n] += 5000
                i += 5000

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"readings": sum(count), "seconds": time.monotonic() - started, "lost": 0}


def _run_pipeline(
    name: str, influx: InfluxDB, broker: Mosquitto, db: str, gateways: int, seconds: float, pid: int
) -> dict[str, Any]:
    cpu_before = _cpu(pid)
    sent, started = _publish(broker.port, [f"{name}-{i}" for i in range(gateways)], seconds)
    total = sum(sent.values())
    done = _wait_stored(influx, db, total, timeout=seconds * 4 + 60)
    points, distinct = _stored(influx, db)
    elapsed = done - started
    return {
        "readings": points,
        "seconds": elapsed,
        "lost": total - distinct,
        "duplicates": points - distinct,
        "published": total,
        "cpu": (_cpu(pid) - cpu_before) / elapsed,
    }


def bench_pantau(
    work: Path, influx: InfluxDB, broker: Mosquitto, gateways: int, seconds: float
) -> dict[str, Any]:
    influx.create_database("pantau")
    port = free_port()
    config = work / "central.yaml"
    config.write_text(
        json.dumps(
            {
                "mqtt": {"url": broker.url, "client_id": "bench-central", "receive_maximum": 200},
                "influx": {"url": influx.url, "database": "pantau", "batch_size": 10000},
                "data_dir": str(work / "central-data"),
                "api": {"listen": f"127.0.0.1:{port}"},
                "log": {"level": "WARNING"},
            }
        )
    )
    with open(work / "central.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_port(port, 30, proc)
        time.sleep(1)
        return _run_pipeline("pantau", influx, broker, "pantau", gateways, seconds, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


NODE_RED_FLOW = """
const t = msg.payload;
const gw = t.gateway, site = t.site;
return t.readings.map(r => ({payload: {measurement: "readings",
  tags: {device: r.device, gateway: gw, site: site},
  fields: {[r.metric]: Number(r.value)}, timestamp: new Date(r.ts)}}));
"""


def bench_nodered(
    work: Path, influx: InfluxDB, broker: Mosquitto, gateways: int, seconds: float
) -> dict[str, Any]:
    red = WORK / "nodered" / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        raise RuntimeError(
            "Node-RED is not installed: run `npm install node-red node-red-contrib-influxdb` "
            "in bench/.work/nodered"
        )
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Node.js) is not installed")
    influx.create_database("nodered")
    user = work / "nodered-user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "node_modules").unlink(missing_ok=True)
    (user / "node_modules").symlink_to(WORK / "nodered" / "node_modules")
    (user / "package.json").write_text(
        json.dumps({"name": "bench", "dependencies": {"node-red-contrib-influxdb": "*"}})
    )
    flow = [
        {"id": "tab", "type": "tab", "label": "bench"},
        {
            "id": "broker",
            "type": "mqtt-broker",
            "broker": "127.0.0.1",
            "port": str(broker.port),
            "clientid": "bench-nodered",
            "protocolVersion": "4",
            "cleansession": True,
            "keepalive": "60",
        },
        {
            "id": "db",
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx.port),
            "database": "nodered",
            "name": "bench",
            "usetls": False,
            "influxdbVersion": "1.x",
        },
        {
            "id": "in",
            "type": "mqtt in",
            "z": "tab",
            "topic": "pantau/v1/+/telemetry",
            "qos": "1",
            "datatype": "utf8",
            "broker": "broker",
            "wires": [["json"]],
        },
        {
            "id": "json",
            "type": "json",
            "z": "tab",
            "property": "payload",
            "action": "obj",
            "wires": [["split"]],
        },
        {
            "id": "split",
            "type": "function",
            "z": "tab",
            "func": NODE_RED_FLOW,
            "outputs": 1,
            "wires": [["join"]],
        },
        {
            "id": "join",
            "type": "join",
            "z": "tab",
            "mode": "custom",
            "build": "array",
            "property": "payload",
            "propertyType": "msg",
            "count": "5000",
            "timeout": "0.2",
            "joiner": "\\n",
            "accumulate": False,
            "wires": [["out"]],
        },
        {
            "id": "out",
            "type": "influxdb batch",
            "z": "tab",
            "influxdb": "db",
            "precision": "ms",
            "wires": [],
        },
    ]
    (user / "flows.json").write_text(json.dumps(flow))
    port = free_port()
    with open(work / "nodered.log", "ab") as log:
        proc = subprocess.Popen(
            [
                node,
                "--max-old-space-size=4096",
                str(red),
                "-u",
                str(user),
                "-p",
                str(port),
                "flows.json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=user,
        )
    try:
        wait_port(port, 60, proc)
        deadline = time.monotonic() + 30
        while "Started flows" not in (work / "nodered.log").read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("Node-RED did not start its flows; see nodered.log")
            time.sleep(0.2)
        time.sleep(2)
        return _run_pipeline("nodered", influx, broker, "nodered", gateways, seconds, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.central_ingest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--gateways", type=int, default=4, help="publishing processes")
    parser.add_argument("--no-nodered", action="store_true")
    args = parser.parse_args(argv)
    work = WORK / f"central-ingest-{int(time.time())}"
    work.mkdir(parents=True)
    broker = Mosquitto(work / "mosquitto").start()
    influx = InfluxDB(work / "influxdb").start()
    rows: dict[str, dict[str, Any]] = {}
    notes = []
    try:
        print(f"mosquitto alone ({args.seconds:g} s) ...", file=sys.stderr)
        rows["mosquitto alone (pub→sub)"] = bench_mosquitto(broker, args.gateways, args.seconds)
        print("InfluxDB direct writes ...", file=sys.stderr)
        rows["InfluxDB direct (2 writers)"] = bench_influx(influx, args.seconds)
        print("Pantau central ...", file=sys.stderr)
        rows["Pantau central"] = bench_pantau(work, influx, broker, args.gateways, args.seconds)
        if not args.no_nodered:
            print("Node-RED ...", file=sys.stderr)
            try:
                rows["Node-RED"] = bench_nodered(work, influx, broker, args.gateways, args.seconds)
            except Exception as exc:  # report, don't hide the rest
                notes.append(f"Node-RED not measured: {exc}")
    finally:
        broker.stop()
        influx.stop()
    pantau = rows["Pantau central"]
    pantau_rate = pantau["readings"] / pantau["seconds"]
    print(
        f"{'pipeline':<30} {'readings/s':>12} {'lost':>8} {'dups':>6} {'CPU':>6} {'Pantau is':>10}"
    )
    for name, row in rows.items():
        rate = row["readings"] / row["seconds"]
        cpu = f"{row['cpu'] * 100:.0f}%" if "cpu" in row else "-"
        ratio = f"{pantau_rate / rate:.2f}x" if name != "Pantau central" and rate else "-"
        print(
            f"{name:<30} {rate:>12,.0f} {row['lost']:>8} "
            f"{row.get('duplicates', 0):>6} {cpu:>6} {ratio:>10}"
        )
    for note in notes:
        print(note)
    print(f"(work dir {work}; {os.cpu_count()} CPUs)")
    print(
        json.dumps(
            {
                "readings_per_s": round(pantau_rate),
                "lost": pantau["lost"],
                "duplicates": pantau["duplicates"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
