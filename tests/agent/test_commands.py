"""Downlink commands against a running agent (subprocess) through a real mosquitto."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import AgentConfig, redacted
from scripts.services import Mosquitto
from tests.agent.test_faults import STARTUP, AgentProcess, Recorder, wait_for, write_config
from wire.structs import convert

SECRETS = ["s3cret-mqtt-pw", "community-s3cret", "authkey-s3cret", "privkey-s3cret", "tok-s3cret"]


class Commander:
    """Sends commands to one gateway and collects the replies by id."""

    def __init__(self, port: int, gateway: str) -> None:
        self.gateway = gateway
        self.replies: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cmd-{uuid.uuid4().hex}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"pantau/v1/{gateway}/cmd/reply", qos=1)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with self.cond:
            self.replies[doc["id"]] = doc
            self.cond.notify_all()

    def send_raw(self, payload: bytes) -> None:
        self.client.publish(f"pantau/v1/{self.gateway}/cmd", payload, qos=1).wait_for_publish(5)

    def wait(self, command_id: str, timeout: float = 10) -> dict[str, Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: command_id in self.replies, timeout), (
                f"no reply to {command_id}"
            )
            return self.replies[command_id]

    def ask(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        command_id = uuid.uuid4().hex[:8]
        self.send_raw(
            json.dumps({"v": 1, "id": command_id, "name": name, "args": args or {}}).encode()
        )
        return self.wait(command_id)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config_with_secrets(path: Path, gateway: str, port: int, devices: list[dict[str, Any]]) -> Path:
    write_config(path, gateway, port, devices=devices)
    data = yaml.safe_load(path.read_text())
    data["mqtt"]["username"] = gateway
    data["mqtt"]["password"] = SECRETS[0]
    data["devices"].append(
        {
            "id": "tower-ups",
            "profile": "network/snmp-ups",
            "enabled": False,
            "connection": {
                "host": "127.0.0.1",
                "community": SECRETS[1],
                "auth_key": SECRETS[2],
                "priv_key": SECRETS[3],
                "headers": {"X-Api-Token": SECRETS[4]},
                "url": f"http://admin:{SECRETS[0]}@127.0.0.1/",
            },
        }
    )
    path.write_text(yaml.safe_dump(data))
    return path


DEVICES = [
    {"id": "counter-1", "profile": "simulated/counter", "interval": "1s"},
    {
        "id": "broken-1",
        "profile": "simulated/counter",
        "interval": "1s",
        "connection": {"fail": True},
    },
]


@pytest.fixture(scope="module")
def running(
    broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Commander, Path, Recorder, AgentProcess]]:
    gateway = f"gw-cmd-{uuid.uuid4().hex[:6]}"
    folder = tmp_path_factory.mktemp("commands")
    config = config_with_secrets(folder / "agent.yaml", gateway, broker.port, DEVICES)
    recorder = Recorder(broker.port, gateway, f"rec-{gateway}", persistent=False).start()
    agent = AgentProcess(config)
    commander = Commander(broker.port, gateway)
    try:
        wait_for(lambda: recorder.latest("state") is not None, STARTUP, "the birth message")
        yield commander, config, recorder, agent
    finally:
        commander.stop()
        recorder.stop()
        agent.stop()


def test_ping(running: tuple) -> None:
    reply = running[0].ask("ping")
    assert reply["ok"] is True and reply["result"]["pong"] is True
    assert reply["gateway"] == running[0].gateway


def test_poll_now_one_device_and_all(running: tuple) -> None:
    commander = running[0]
    one = commander.ask("poll-now", {"device": "counter-1"})
    assert one["ok"] is True
    assert list(one["result"]) == ["counter-1"]
    assert one["result"]["counter-1"][0]["metric"] == "count"
    assert one["result"]["counter-1"][0]["quality"] == "good"
    every = commander.ask("poll-now")
    assert set(every["result"]) == {"counter-1", "broken-1"}
    assert every["result"]["broken-1"][0]["quality"] == "bad"
    assert every["result"]["broken-1"][0]["error"] == "simulated failure"


def test_bad_commands_get_error_replies_and_the_agent_lives_on(running: tuple) -> None:
    commander, agent = running[0], running[3]
    missing = commander.ask("poll-now", {"device": "nope"})
    assert missing["ok"] is False and "no polled device with id 'nope'" in missing["error"]
    bad_args = commander.ask("poll-now", {"device": 7, "extra": 1})
    assert bad_args["ok"] is False and "extra" in bad_args["error"]
    unknown = commander.ask("reboot-now")
    assert unknown["ok"] is False and "unknown command 'reboot-now'" in unknown["error"]
    commander.send_raw(b'{"v": 1, "id": "schema-1", "name": 42}')
    assert commander.wait("schema-1")["ok"] is False
    commander.send_raw(b"\xff\xfe not json")
    time.sleep(0.3)
    assert commander.ask("ping")["ok"] is True
    assert agent.proc.poll() is None
    assert commander.replies.get("?", {}).get("ok") is False


def test_get_config_redacts_every_secret(running: tuple) -> None:
    reply = running[0].ask("get-config")
    assert reply["ok"] is True
    text = json.dumps(reply)
    for secret in SECRETS:
        assert secret not in text
    config = reply["result"]
    assert config["mqtt"]["password"] == "**redacted**"
    assert config["mqtt"]["username"] == running[0].gateway
    ups = config["devices"][-1]["connection"]
    assert ups["community"] == ups["auth_key"] == ups["priv_key"] == "**redacted**"
    assert ups["host"] == "127.0.0.1"
    assert ups["url"] == "http://admin:**redacted**@127.0.0.1/"


def test_reload_config_applies_a_good_file_and_keeps_the_old_on_a_bad_one(
    running: tuple,
) -> None:
    commander, config, recorder = running[0], running[1], running[2]
    original = config.read_text()
    try:
        data = yaml.safe_load(original)
        data["devices"].insert(1, {"id": "counter-2", "profile": "simulated/counter"})
        config.write_text(yaml.safe_dump(data))
        reply = commander.ask("reload-config")
        assert reply["ok"] is True, reply
        assert reply["result"]["devices"] == ["counter-1", "counter-2", "broken-1"]
        assert reply["result"]["restart_needed_for"] == []
        wait_for(
            lambda: (
                [d["id"] for d in (recorder.latest("state") or {}).get("devices", [])]
                == ["counter-1", "counter-2", "broken-1"]
            ),
            5,
            "a new birth message",
        )
        data["devices"][0]["intervall"] = "5s"
        config.write_text(yaml.safe_dump(data))
        bad = commander.ask("reload-config")
        assert bad["ok"] is False
        assert "kept the running config" in bad["error"]
        assert f"{config}: devices[0].intervall: unknown key" in bad["error"]
        assert SECRETS[0] not in bad["error"]
        assert set(commander.ask("poll-now")["result"]) == {"counter-1", "counter-2", "broken-1"}
    finally:
        config.write_text(original)


def test_redacted_hides_secret_keys_at_any_depth(tmp_path: Path) -> None:
    path = config_with_secrets(tmp_path / "agent.yaml", "gw-red", 1883, DEVICES)
    config = convert(yaml.safe_load(path.read_text()), AgentConfig)
    text = json.dumps(redacted(config))
    for secret in SECRETS:
        assert secret not in text
    assert '"keepalive": "30s"' in text  # ordinary keys stay readable
