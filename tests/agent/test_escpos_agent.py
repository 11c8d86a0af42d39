"""The whole chain on one machine: a POS prints to the agent's port-9100 proxy,
a fake network printer gets the bytes, and the receipt arrives as a valid
``events`` message on a real mosquitto."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

import wire
from scripts.agentunit import unit_environment
from scripts.services import Mosquitto, free_port, wait_port
from tests.agent import escpos_samples as samples

ROOT = Path(__file__).resolve().parents[2]


class SocketPrinter:
    """A network printer in a thread on a free loopback port; records each job."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.jobs: list[bytes] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fake-printer", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                job = bytearray()
                while chunk := conn.recv(65536):
                    job += chunk
                self.jobs.append(bytes(job))
                if job:  # the port probe below makes an empty job
                    self.done.set()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.payloads: list[bytes] = []
        self.got = threading.Event()
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{os.getpid()}")
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5), "could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.payloads.append(bytes(msg.payload))
        self.got.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def printer() -> Iterator[SocketPrinter]:
    server = SocketPrinter()
    yield server
    server.close()


@pytest.mark.parametrize("as_unit", [False, True], ids=["python", "as-the-unit-runs-it"])
def test_a_receipt_printed_through_the_agent_arrives_as_an_events_message(
    tmp_path: Path, broker: Mosquitto, gateway_id: str, printer: SocketPrinter, as_unit: bool
) -> None:
    listen = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gateway": {"id": gateway_id, "site": "RM Sederhana"},
                "mqtt": {"url": broker.url, "reconnect_min": "200ms", "reconnect_max": "1s"},
                "buffer": {"path": str(tmp_path / "buffer.db"), "commit_interval": "100ms"},
                "devices": [
                    {
                        "id": "resto-1",
                        "profile": "tapping-box/escpos-generic",
                        "connection": {
                            "transport": "tcp",
                            "listen": f"127.0.0.1:{listen}",
                            "printer": f"127.0.0.1:{printer.port}",
                        },
                    }
                ],
            }
        )
    )
    subscriber = Subscriber(broker.port, wire.topic(gateway_id, "events"))
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(unit_environment(tmp_path / "cache") if as_unit else {})},
        )
    try:
        wait_port(listen, proc=agent)
        job = samples.restaurant()
        with socket.create_connection(("127.0.0.1", listen), timeout=5) as pos:
            pos.sendall(job)
            pos.shutdown(socket.SHUT_WR)
            assert pos.recv(10) == b""  # the job is done when the proxy closes
        assert printer.done.wait(5), "the printer got no job"
        assert subscriber.got.wait(10), (tmp_path / "agent.log").read_text()
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait()
        subscriber.close()
    assert [j for j in printer.jobs if j] == [job]
    [payload] = subscriber.payloads
    event = wire.decode("events", payload, topic_gateway=gateway_id)
    assert (event.device, event.kind, event.site, event.error) == (
        "resto-1",
        "receipt",
        "RM Sederhana",
        None,
    )
    data = event.data
    assert (data["receipt_no"], data["total"], data["tax"], data["service"]) == (
        "R-000123",
        166320,
        15120,
        7200,
    )
    assert base64.b64decode(data["raw_b64"]) == job[: data["bytes"]]
    assert "RM SEDERHANA" in data["text"]
    assert json.loads(payload)["ts"] == event.ts
