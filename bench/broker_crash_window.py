"""What a broker crash (SIGKILL) loses while central is away, per persistence setting.

A persistent session stands in for central (MQTT 5, clean start off, like
central/ingest.py) and goes away; a gateway publishes N QoS 1 telemetry messages, each
acknowledged by the broker (PUBACK); the broker is killed with SIGKILL right after the
last PUBACK and started again on the same persistence file; central's session comes
back and counts what it gets. Also: how fast the gateway could publish with that
setting (saving the persistence file costs the broker time).

    python -m bench.broker_crash_window [--messages 2000] [--rounds 3] [--only TEXT]

Prints one line per setting: lost messages per round, and publish rate.
"""

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from scripts.services import MOSQUITTO_LIMITS, find_binary, free_port, wait_port

SETTINGS = {
    "autosave_interval 60 (seconds; shipped before)": "autosave_interval 60\n",
    "autosave_on_changes, every 100 changes": ("autosave_on_changes true\nautosave_interval 100\n"),
    "autosave_on_changes, every 1000 changes (shipped now)": (
        "autosave_on_changes true\nautosave_interval 1000\n"
    ),
    "autosave_on_changes, every change": "autosave_on_changes true\nautosave_interval 1\n",
}


def _broker(workdir: Path, port: int, persistence: str) -> subprocess.Popen[bytes]:
    user = "user root\n" if os.geteuid() == 0 else ""
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"{user}listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {workdir}/\n{persistence}{MOSQUITTO_LIMITS}"
    )
    proc = subprocess.Popen(
        [find_binary("mosquitto"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc=proc)
    return proc


def _central(port: int, got: list[int]) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-central", protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    subscribed = threading.Event()
    c.on_message = lambda *_: got.append(1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.on_connect = lambda client, *_: client.subscribe("pantau/v1/+/telemetry", qos=1)
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    subscribed.wait(10)
    return c


def _round(persistence: str, messages: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(prefix="pantau-crash-") as tmp:
        workdir, port = Path(tmp), free_port()
        broker = _broker(workdir, port, persistence)
        try:
            got: list[int] = []
            central = _central(port, got)
            central.disconnect()  # away: the broker queues for it
            central.loop_stop()
            gateway = paho.Client(
                CallbackAPIVersion.VERSION2, client_id="bench-gw", clean_session=True
            )
            gateway.max_inflight_messages_set(100)
            gateway.max_queued_messages_set(0)
            gateway.connect("127.0.0.1", port)
            gateway.loop_start()
            payload = b'{"v":1,"gateway":"bench-gw","seq":1,"readings":[]}' + b" " * 400
            started = time.monotonic()
            infos = [
                gateway.publish("pantau/v1/bench-gw/telemetry", payload, qos=1)
                for _ in range(messages)
            ]
            for info in infos:
                info.wait_for_publish(60)
            rate = messages / (time.monotonic() - started)
            broker.send_signal(signal.SIGKILL)  # right after the last PUBACK
            broker.wait(10)
            gateway.loop_stop()
            broker = _broker(workdir, port, persistence)
            central = _central(port, got)
            deadline = time.monotonic() + 10
            while len(got) < messages and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            central.disconnect()
            central.loop_stop()
            return messages - len(got), rate
        finally:
            broker.kill()
            broker.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_crash_window")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="only settings whose name contains this")
    args = parser.parse_args(argv)
    print(f"mosquitto SIGKILLed after {args.messages} acknowledged QoS 1 messages, central away")
    for name, persistence in SETTINGS.items():
        if args.only and args.only not in name:
            continue
        results = [_round(persistence, args.messages) for _ in range(args.rounds)]
        lost = ", ".join(str(lost) for lost, _ in results)
        rate = sum(r for _, r in results) / len(results)
        print(f"{name}: lost {lost} of {args.messages}; publish {rate:,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
