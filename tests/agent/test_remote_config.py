"""``apply-config``: a device list (and the profiles it needs) pushed to a RUNNING agent
through a real mosquitto: applied atomically and kept across restarts; a bad one
rejected with the agent still polling the old devices; rolled back when the broker
confirms nothing after applying."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.buffer import open_buffer
from agent.config import load_config
from agent.devices import build_devices
from agent.remote import Push, RemoteStore, store_for
from scripts.services import Mosquitto
from tests.agent.test_commands import Commander
from tests.agent.test_faults import STARTUP, AgentProcess, Recorder, wait_for, write_config

OLD = [{"id": "old-1", "profile": "simulated/counter", "interval": "200ms"}]
BLINK = {
    "driver": "simulated",
    "model": "blink",
    "description": "a profile the gateway does not ship",
    "metrics": [{"metric": "blink", "kind": "counter"}],
}
NEW = {
    "devices": [
        {"id": "new-1", "profile": "site/blink", "interval": "200ms"},
        {"id": "new-2", "profile": "simulated/counter", "interval": "200ms"},
    ],
    "profiles": {"site/blink": BLINK},
}


def polled_since(recorder: Recorder, since: int) -> dict[str, set[str]]:
    """device → metrics in telemetry that arrived after the first ``since`` messages."""
    with recorder.lock:
        docs = list(recorder.messages["telemetry"][since:])
    out: dict[str, set[str]] = {}
    for doc in docs:
        for r in doc["readings"]:
            out.setdefault(r["device"], set()).add(r["metric"])
    return out


def mark(recorder: Recorder) -> int:
    with recorder.lock:
        return len(recorder.messages["telemetry"])


def sampled_after(recorder: Recorder, t_ms: int) -> set[str]:
    """Devices with readings sampled after ``t_ms``."""
    with recorder.lock:
        docs = list(recorder.messages["telemetry"])
    return {r["device"] for doc in docs for r in doc["readings"] if r["ts"] > t_ms}


@pytest.fixture
def running(
    broker: Mosquitto, tmp_path: Path, gateway_id: str
) -> Iterator[tuple[Commander, Recorder, Path, list[AgentProcess]]]:
    config = write_config(tmp_path / "agent.yaml", gateway_id, broker.port, devices=OLD)
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}", persistent=False).start()
    agents = [AgentProcess(config)]
    commander = Commander(broker.port, gateway_id)
    try:
        wait_for(lambda: "old-1" in polled_since(recorder, 0), STARTUP, "readings of old-1")
        yield commander, recorder, config, agents
    finally:
        commander.stop()
        recorder.stop()
        for agent in agents:
            if agent.proc.poll() is None:
                agent.stop()


def test_a_pushed_config_changes_what_the_agent_polls_and_survives_a_restart(
    running: tuple[Commander, Recorder, Path, list[AgentProcess]],
) -> None:
    commander, recorder, config, agents = running
    reply = commander.ask("apply-config", NEW)
    assert reply["ok"] is True, reply
    assert reply["result"]["devices"] == ["new-1", "new-2"]
    assert reply["result"]["profiles"] == ["site/blink"]
    applied_ms = int(time.time() * 1000)
    wait_for(lambda: {"new-1", "new-2"} <= set(polled_since(recorder, 0)), 10, "the pushed devices")
    assert polled_since(recorder, 0)["new-1"] == {"blink"}  # the pushed profile is used
    time.sleep(1.0)
    assert "old-1" not in sampled_after(recorder, applied_ms + 500), "old device still polled"
    birth = recorder.latest("state")
    assert birth is not None and [d["id"] for d in birth["devices"]] == ["new-1", "new-2"]
    # the broker acknowledged the new birth: the push is confirmed, on disk
    store = store_for(load_config(config))
    wait_for(lambda: (store.current() or Push(id="", devices=[], applied_at=0)).confirmed, 5, "")

    # kept across a restart of the agent
    agents[0].stop()
    restarted_ms = int(time.time() * 1000)
    agents.append(AgentProcess(config))
    wait_for(
        lambda: "new-1" in sampled_after(recorder, restarted_ms), STARTUP, "new-1 after restart"
    )
    assert "old-1" not in sampled_after(recorder, restarted_ms)
    assert "pushed from central (apply-config" in agents[1].log()


def test_a_bad_config_is_rejected_and_the_old_devices_keep_polling(
    running: tuple[Commander, Recorder, Path, list[AgentProcess]],
) -> None:
    commander, recorder, config, agents = running
    bad_profile = {"devices": [{"id": "x-1", "profile": "simulated/nope"}]}
    reply = commander.ask("apply-config", bad_profile)
    assert reply["ok"] is False
    assert reply["error"].startswith("apply-config: kept the running devices: ")
    assert "devices[0].profile" in reply["error"] and "simulated/nope" in reply["error"]

    bad_key = {"devices": [{"id": "x-1", "profile": "simulated/counter", "intervall": "1s"}]}
    reply = commander.ask("apply-config", bad_key)
    assert reply["ok"] is False and "devices[0].intervall: unknown key" in reply["error"]

    bad_profile_doc = {
        "devices": [{"id": "x-1", "profile": "site/broken"}],
        "profiles": {"site/broken": {"driver": "simulated", "metrics": [{"kind": "sine"}]}},
    }
    reply = commander.ask("apply-config", bad_profile_doc)
    assert reply["ok"] is False and "site/broken" in reply["error"]

    twice = {"devices": [{"id": "a", "profile": "simulated/counter"}] * 2}
    reply = commander.ask("apply-config", twice)
    assert reply["ok"] is False and "used twice" in reply["error"]

    rejected_ms = int(time.time() * 1000)
    wait_for(lambda: "old-1" in sampled_after(recorder, rejected_ms + 500), 10, "old-1 polled")
    assert sampled_after(recorder, 0) == {"old-1"}
    assert store_for(load_config(config)).current() is None
    assert agents[0].proc.poll() is None


def test_unconfirmed_push_rolls_back_when_the_broker_stays_away(
    make_broker, tmp_path: Path, gateway_id: str
) -> None:
    """Applied while the broker is gone: nothing confirms it, so after rollback_after the
    agent polls its old devices again and tells the broker so when it is back."""
    server = make_broker()
    path = write_config(
        tmp_path / "agent.yaml",
        gateway_id,
        server.port,
        devices=OLD,
        remote_config={"rollback_after": "1s"},
    )
    config = load_config(path)
    store = store_for(config)

    async def scenario() -> dict[str, Any]:
        buffer = open_buffer(config.buffer.path, 16, None)
        agent = Agent(config, build_devices(config), buffer, config_path=path, remote=store)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            for _ in range(100):
                if agent.mqtt is not None and agent.mqtt.connected.is_set():
                    break
                await asyncio.sleep(0.05)
            assert agent.mqtt is not None and agent.mqtt.connected.is_set()
            server.kill()
            for _ in range(100):
                if not agent.mqtt.connected.is_set():
                    break
                await asyncio.sleep(0.05)
            result = await agent.apply_config("c-offline", NEW)
            assert set(agent.pollers) == {"new-1", "new-2"}
            on_disk = store.current()
            assert on_disk is not None and not on_disk.confirmed
            await asyncio.sleep(1.5)
            rolled_back = set(agent.pollers)
            server.start()
            for _ in range(200):
                if agent.mqtt.connected.is_set():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            return {"result": result, "after": rolled_back, "push": agent.push}
        finally:
            stop.set()
            await task

    out = asyncio.run(scenario())
    assert out["result"]["applied"] == "c-offline"
    assert out["after"] == {"old-1"}
    assert out["push"] is None and store.current() is None
    assert not any(store.folder.glob("profiles/*")), "the rolled-back push's profiles are gone"


def test_a_push_left_unconfirmed_by_a_crash_is_rolled_back_at_start(
    broker: Mosquitto, tmp_path: Path, gateway_id: str
) -> None:
    """The agent died right after applying (pushed.json holds an unconfirmed push older
    than rollback_after): the next start runs agent.yaml's devices."""
    path = write_config(
        tmp_path / "agent.yaml",
        gateway_id,
        broker.port,
        devices=OLD,
        remote_config={"rollback_after": "1s"},
    )
    store: RemoteStore = store_for(load_config(path))
    push = Push(id="c-crashed", devices=NEW["devices"], profiles=NEW["profiles"], applied_at=0.0)
    store.stage(push)
    store.commit(push)
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}", persistent=False).start()
    agent = AgentProcess(path)
    try:
        wait_for(lambda: recorder.latest("state") is not None, STARTUP, "the birth")
        birth = recorder.latest("state")
        assert birth is not None and [d["id"] for d in birth["devices"]] == ["old-1"]
        assert "never confirmed by the broker: rolling back" in agent.log()
        assert store.current() is None
    finally:
        agent.stop()
        recorder.stop()
    assert json.loads(store.path.read_text()) == {"current": None, "previous": None}


def test_remote_config_costs_the_running_agent_no_extra_modules() -> None:
    from tests.agent.test_lean import run_python

    out = run_python(
        "import sys\n"
        "from agent.lean import defer_unused_imports\n"
        "defer_unused_imports()\n"
        "import agent.app\n"
        "print(*(m in sys.modules for m in ('json', 'shutil', 'tempfile')))\n"
    )
    assert out == ["False", "False", "False"]
