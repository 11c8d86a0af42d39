"""Test helpers for central: configs, a counter publisher that behaves like the agent
(QoS 1 telemetry batches, retried until PUBACK), and InfluxDB read-backs."""

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from scripts.services import InfluxDB, ServiceError, stop_process

BASE_TS = 1_700_000_000_000


def central_yaml(
    path: Path,
    mqtt_url: str,
    influx_url: str,
    database: str,
    data_dir: Path,
    api_port: int = 0,
    **extra: Any,
) -> Path:
    """Write a central.yaml; ``extra`` keys ``mqtt``/``influx`` are merged into those sections."""
    doc: dict[str, Any] = {
        "mqtt": {"url": mqtt_url, "client_id": f"central-{path.parent.name}-{path.stem}"},
        "influx": {"url": influx_url, "database": database, "flush_interval": "50ms"},
        "data_dir": str(data_dir),
        "api": {"listen": f"127.0.0.1:{api_port or 8080}"},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and key in doc:
            doc[key].update(value)
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def telemetry(gateway: str, seq: int, start: int, count: int, device: str = "counter") -> bytes:
    """A telemetry batch shaped like the agent's: readings of one counter, value = index."""
    readings = ",".join(
        f'{{"device":"{device}","metric":"count","value":{i},"ts":{BASE_TS + i * 1000},'
        f'"quality":"good"}}'
        for i in range(start, start + count)
    )
    return (
        f'{{"v":1,"gateway":"{gateway}","seq":{seq},"site":"kota-test","readings":[{readings}]}}'
    ).encode()


class Publisher:
    """A QoS 1 publisher that, like the agent, keeps a message until the broker acks it
    and sends it again after a reconnect (paho resends unacked QoS 1 on reconnect with
    a persistent session)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(0.1, 1)
        self._acked = 0
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_publish(self, *args: Any) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        wait_for(lambda: self.acked >= count, timeout, f"{count} PUBACKs (got {self.acked})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def counter_values(influx: InfluxDB, db: str, gateway: str, device: str = "counter") -> list[int]:
    """Every stored value of the counter, in time order (one per point)."""
    q = f"SELECT \"count\" FROM readings WHERE gateway = '{gateway}' AND device = '{device}'"
    try:
        rows = influx.values(q, db)
    except ServiceError as exc:
        if "database not found" in str(exc):
            return []
        raise
    return [int(r[1]) for r in rows]


def points_per_time(influx: InfluxDB, db: str, gateway: str, n: int) -> set[int]:
    """The distinct numbers of points stored per sample time (one reading per second):
    {1} when no reading was stored twice (not even under another series key)."""
    rows = influx.values(
        f"SELECT COUNT(\"count\") FROM readings WHERE gateway = '{gateway}' "
        f"AND time >= {BASE_TS}ms AND time < {BASE_TS + n * 1000}ms GROUP BY time(1s) fill(none)",
        db,
    )
    return {int(r[1]) for r in rows}


class CentralProcess:
    """``python -m central run -c <yaml>`` as a child process, stopped by its pid."""

    def __init__(self, config: Path, api_port: int, log: Path) -> None:
        self.config, self.api_port, self.log = config, api_port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "CentralProcess":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "central", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        wait_for(self._listening, 20, "central's API to listen")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"central exited with {self.proc.returncode}: {self.output()}")
        try:
            httpx.get(f"{self.url}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/readyz", timeout=5).json()
        return body

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
