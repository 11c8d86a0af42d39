"""Drain a one-hour backlog while fresh readings keep flowing.

A buffer is filled with 360,000 readings (one hour of 100 values/s), then the
agent (``python -m agent run``, a subprocess) starts against a real mosquitto
with a simulated device adding 100 fresh readings/s. A subscriber counts what
arrives: backlog readings (sampled before the start) and fresh ones, and how
late the fresh ones arrive while the backlog drains.

    .venv/bin/python -m bench.agent_drain [--backlog 360000] [--fresh-per-s 100]

Target: the backlog drains at >= 20,000 readings/s; fresh readings keep arriving.
"""

import argparse
import json
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

from agent.app import reading_body
from agent.buffer import SqliteBuffer
from agent.drivers import Sample
from scripts.services import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "drain"
GATEWAY = "gw-bench-drain"


class Counter:
    def __init__(self, port: int, started_ms: int) -> None:
        self.started_ms = started_ms
        self.backlog = 0
        self.fresh = 0
        self.messages = 0
        self.max_fresh_lag = 0.0
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-drain-counter")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"pantau/v1/{GATEWAY}/telemetry", qos=1)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        readings = json.loads(msg.payload)["readings"]
        now_ms = time.time() * 1000
        with self.lock:
            self.messages += 1
            for r in readings:
                if r["ts"] < self.started_ms:
                    self.backlog += 1
                else:
                    self.fresh += 1
                    self.max_fresh_lag = max(self.max_fresh_lag, (now_ms - r["ts"]) / 1000)

    def snapshot(self) -> tuple[int, int, float]:
        with self.lock:
            return self.backlog, self.fresh, self.max_fresh_lag

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fill(path: Path, count: int, per_s: int) -> float:
    started = time.perf_counter()
    buffer = SqliteBuffer(path)
    now = time.time()
    first = now - count / per_s - 5
    batch: list[bytes] = []
    for n in range(count):
        ts = round((first + n / per_s) * 1000)
        batch.append(reading_body(f"dev-{n % 10}", ts, Sample(f"m{n % 10}", n * 0.5, "cm")))
        if len(batch) == 10_000 or n == count - 1:
            buffer.add("telemetry", ts, batch)
            buffer.commit()
            batch = []
    buffer.close()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=360_000)
    parser.add_argument("--fresh-per-s", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    profiles = WORK / "profiles" / "bench"
    profiles.mkdir(parents=True)
    metrics = 10
    (profiles / "ten.yaml").write_text(
        yaml.safe_dump(
            {
                "driver": "simulated",
                "metrics": [{"metric": f"v{i}", "kind": "sine"} for i in range(metrics)],
            }
        )
    )
    buffer_path = WORK / "buffer.db"
    fill_s = fill(buffer_path, args.backlog, 100)
    print(f"filled {args.backlog} readings into {buffer_path} in {fill_s:.1f}s")
    print(f"buffer file: {buffer_path.stat().st_size / 1e6:.1f} MB")

    broker = Mosquitto(WORK / "mosquitto").start()
    interval = metrics / args.fresh_per_s
    config = WORK / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"id": GATEWAY, "site": "bench"},
                "mqtt": {"url": broker.url},
                "buffer": {"path": str(buffer_path), "max_mb": 1024},
                "profiles_dir": str(WORK / "profiles"),
                "log": {"level": "WARNING"},
                "devices": [{"id": "fresh-1", "profile": "bench/ten", "interval": interval}],
            }
        )
    )
    started_ms = round(time.time() * 1000)
    counter = Counter(broker.port, started_ms)
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(config)],
        cwd=ROOT,
        stdout=open(WORK / "agent.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    t0 = time.perf_counter()
    first_at = None
    done_at = None
    fresh_at_done = 0
    try:
        while time.perf_counter() - t0 < args.timeout:
            backlog, fresh, _lag = counter.snapshot()
            if first_at is None and backlog:
                first_at = time.perf_counter()
            if backlog >= args.backlog:
                done_at = time.perf_counter()
                fresh_at_done = fresh
                break
            time.sleep(0.02)
        time.sleep(2)  # fresh readings keep flowing after the drain
    finally:
        agent.terminate()
        agent.wait(30)
        counter.stop()
        broker.stop()
    backlog, fresh, lag = counter.snapshot()
    if done_at is None or first_at is None:
        print(f"backlog NOT drained within {args.timeout}s: {backlog} of {args.backlog}")
        print(json.dumps({"bench": "agent_drain", "ok": False, "backlog_received": backlog}))
        return 1
    drain_s = done_at - first_at
    total_s = done_at - t0
    rate = args.backlog / drain_s
    print(f"backlog drained: {args.backlog} readings in {drain_s:.2f}s = {rate:,.0f} readings/s")
    print(f"  (from agent start, incl. python start-up: {total_s:.2f}s)")
    print(f"fresh readings during the drain: {fresh_at_done} (scheduled ~{args.fresh_per_s}/s;")
    print("  a drain shorter than the 1s commit window leaves no time for fresh ones)")
    print(f"fresh readings in all: {fresh}; worst fresh delivery lag: {lag:.2f}s")
    print(f"duplicates of backlog readings: {backlog - args.backlog}")
    print(
        json.dumps(
            {
                "bench": "agent_drain",
                "ok": rate >= 20_000 and fresh > 0 and backlog == args.backlog,
                "backlog": args.backlog,
                "drain_s": round(drain_s, 2),
                "readings_per_s": round(rate),
                "fresh_during_drain": fresh_at_done,
                "fresh_total": fresh,
                "max_fresh_lag_s": round(lag, 2),
                "backlog_duplicates": backlog - args.backlog,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
