"""Alert latency under load: a reading that crosses a threshold → the webhook received.

    .venv/bin/python -m bench.alert_latency [--rate 30000] [--crossings 120]

In one run, with real mosquitto and InfluxDB in bench/.work/alert_latency/:
``python -m central run`` (a child process) ingests a heavy telemetry load (``--rate``
readings/s in 500-reading QoS 1 batches from separate publisher processes, none of
which match a rule) while this process publishes, one at a time, readings from a
probe gateway that cross a threshold (``above: 300``) and fall back (``clear_below``).
A threaded HTTP receiver here records each webhook's arrival; the latency of a
crossing is publish → firing webhook received (and of its fall, → resolved webhook).

Prints p50 / p90 / p99 / max and the load central actually ingested; the last line is
JSON: ``{"p50_ms": ..., "p99_ms": ..., "crossings": ..., "load_readings_per_s": ...}``.
Target: p99 ≤ 1 s.
"""

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from scripts.services import InfluxDB, Mosquitto, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
CENTRAL = [sys.executable, "-m", "central"]
WORK = ROOT / "bench" / ".work" / "alert_latency"
BATCH = 500
RULES = """
rules:
  - name: probe-high
    kind: threshold
    match: {gateway: "probe-*", metric: level_cm}
    above: 300
    clear_below: 290
    severity: critical
    annotations: {summary: "{device}: {value} cm"}
"""


def _load(port: int, gateway: str, rate: float, stop_at: float, result: Any) -> None:
    """A publisher process: ``rate`` readings/s in QoS 1 batches of 500."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{gateway}")
    client.max_inflight_messages_set(50)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    interval = BATCH / rate
    seq, n = 1, 0
    start = time.time()
    next_at = time.monotonic()
    while time.time() < stop_at:
        ts = int(time.time() * 1000)
        readings = b",".join(
            b'{"device":"d%d","metric":"count","value":%d,"ts":%d}' % (i % 50, n + i, ts - i % 50)
            for i in range(BATCH)
        )
        head = f'{{"v":1,"gateway":"{gateway}","seq":{seq},"site":"kota-load","readings":['
        client.publish(f"pantau/v1/{gateway}/telemetry", head.encode() + readings + b"]}", 1)
        seq += 1
        n += BATCH
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.disconnect()
    client.loop_stop()
    result.put((gateway, n, time.time() - start))


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                alert = json.loads(body)["alerts"][0]
                key = (alert["labels"]["device"], alert["status"])
                with receiver.cond:
                    receiver.arrivals.setdefault(key, now)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait(self, key: tuple[str, str], timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrivals[key]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ingested(api: str, token: str) -> int:
    request = urllib.request.Request(f"{api}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("pantau_readings_ingested_total "):
                return int(float(line.split()[1]))
    return 0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30_000, help="load readings/s")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--crossings", type=int, default=120)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args(argv)

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    broker = Mosquitto(WORK / "mosquitto").start()
    influx = InfluxDB(WORK / "influxdb").start()
    receiver = Receiver()
    central: subprocess.Popen[bytes] | None = None
    procs: list[Any] = []
    try:
        api_port = free_port()
        (WORK / "rules.yaml").write_text(RULES)
        config = WORK / "central.yaml"
        config.write_text(
            json.dumps(
                {
                    "mqtt": {"url": broker.url, "client_id": "central-alert-bench"},
                    "influx": {"url": influx.url, "database": "bench"},
                    "data_dir": str(WORK / "data"),
                    "api": {"listen": f"127.0.0.1:{api_port}"},
                    "rules_file": str(WORK / "rules.yaml"),
                    "webhooks": [
                        {
                            "name": "bench",
                            "url": f"http://127.0.0.1:{receiver.port}/hook",
                            "secret": "bench-secret",
                        }
                    ],
                }
            )
        )
        token = (
            subprocess.run(
                [*CENTRAL, "token", "create", "-c", str(config), "--role", "read"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with open(WORK / "central.log", "wb") as log:
            central = subprocess.Popen(
                [sys.executable, "-m", "central", "run", "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        wait_port(api_port, 30, central)
        api = f"http://127.0.0.1:{api_port}"

        # the load: publisher processes until the probes are done (plus a margin)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        stop_at = time.time() + args.warmup + args.crossings * 2.0 + 60
        for n in range(args.publishers):
            p = ctx.Process(
                target=_load,
                args=(broker.port, f"load-{n}", args.rate / args.publishers, stop_at, results),
            )
            p.start()
            procs.append(p)
        time.sleep(args.warmup)
        ingested_start, load_start = _ingested(api, token), time.time()

        probe = paho.Client(CallbackAPIVersion.VERSION2, client_id="probe-publisher")
        probe.connect("127.0.0.1", broker.port, keepalive=30)
        probe.loop_start()
        fire: list[float] = []
        resolve: list[float] = []
        missed = 0
        seq = 1
        for i in range(args.crossings):
            device = f"river-{i}"
            for value, status, into in ((320, "firing", fire), (250, "resolved", resolve)):
                ts = int(time.time() * 1000)
                payload = json.dumps(
                    {
                        "v": 1,
                        "gateway": "probe-1",
                        "seq": seq,
                        "site": "kota-probe",
                        "readings": [
                            {"device": device, "metric": "level_cm", "value": value, "ts": ts}
                        ],
                    }
                ).encode()
                seq += 1
                sent = time.time()
                probe.publish("pantau/v1/probe-1/telemetry", payload, 1)
                arrived = receiver.wait((device, status), 10)
                if arrived is None:
                    missed += 1
                else:
                    into.append(arrived - sent)
            time.sleep(0.05)
        load_seconds = time.time() - load_start
        ingested = _ingested(api, token) - ingested_start
        probe.loop_stop()
        probe.disconnect()
    finally:
        for p in procs:
            p.terminate()
            p.join(10)
        if central is not None and central.poll() is None:
            central.terminate()
            try:
                central.wait(20)
            except subprocess.TimeoutExpired:
                central.kill()
        receiver.close()
        influx.stop()
        broker.stop()

    load_rate = ingested / load_seconds
    print(f"load: {args.rate:,.0f} readings/s offered, central ingested {load_rate:,.0f}/s")
    for name, values in (("firing", fire), ("resolved", resolve)):
        if values:
            ms = [v * 1000 for v in values]
            print(
                f"{name:9s} n={len(ms):4d}  p50 {statistics.median(ms):7.1f} ms  "
                f"p90 {_pct(ms, 0.9):7.1f} ms  p99 {_pct(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms"
            )
    print(f"missed (no webhook within 10 s): {missed}")
    both = [v * 1000 for v in fire + resolve]
    summary = {
        "p50_ms": round(statistics.median(both), 1) if both else None,
        "p99_ms": round(_pct(both, 0.99), 1) if both else None,
        "firing_p99_ms": round(_pct([v * 1000 for v in fire], 0.99), 1) if fire else None,
        "crossings": len(fire),
        "missed": missed,
        "load_readings_per_s": round(load_rate),
        "offered_readings_per_s": args.rate,
    }
    print(json.dumps(summary))
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
