"""Fault tests: a real mosquitto, the agent as a subprocess, a subscriber recording
every ``count`` of the simulated counter profile (consecutive samples differ by 1,
so a lost reading shows as a gap).

Duplicates: QoS 1 is at-least-once, so a batch whose PUBACK was lost in an outage
is sent again by the MQTT client (same payload, same ``seq``). The tests assert
that *we* never send a reading twice: every reading that arrives more than once
arrives in messages with the same ``seq`` (a transport re-send), never re-taken
from the buffer. Central's storage keys readings by (gateway, device, metric,
ts), so such re-sends are written once.
"""

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from scripts.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.1
# a ceiling (not a wait) for an agent to start and connect: a Python process importing
# its modules takes ~1 s on a quiet machine and many times that on a loaded 2-core one
STARTUP = 30.0

T = TypeVar("T")


def count_at(t: float, interval: float = INTERVAL) -> int:
    return int(t / interval + 1e-9)


def write_config(
    path: Path,
    gateway: str,
    port: int,
    interval: str = "100ms",
    devices: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> Path:
    config: dict[str, Any] = {
        "gateway": {"id": gateway, "site": "test-site"},
        "mqtt": {
            "url": f"mqtt://127.0.0.1:{port}",
            "reconnect_min": "200ms",
            "reconnect_max": "1s",
        },
        "buffer": {"path": str(path.parent / "buffer.db"), "commit_interval": "200ms"},
        "health": {"interval": "1s"},
        "log": {"level": "DEBUG"},  # names the ticks a starved poller skipped
        "devices": devices
        if devices is not None
        else [{"id": "counter-1", "profile": "simulated/counter", "interval": interval}],
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path


class AgentProcess:
    """``python -m agent run -c <config>`` in its own session; stopped by pid."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = config.with_suffix(".log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            raise

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def agent_factory() -> Iterator[Callable[..., AgentProcess]]:
    """For an ``agents`` fixture: starts agents, kills what is left at the end."""
    started: list[AgentProcess] = []

    def _start(config: Path, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(config, env)
        started.append(agent)
        return agent

    yield _start
    for agent in started:
        if agent.proc.poll() is None:
            agent.kill()


@pytest.fixture
def agents() -> Iterator[Callable[..., AgentProcess]]:
    yield from agent_factory()


class Recorder:
    """A subscriber to one gateway's uplink (QoS 1), recording what arrives."""

    def __init__(self, port: int, gateway: str, client_id: str, persistent: bool = True) -> None:
        self.gateway = gateway
        self.lock = threading.Lock()
        self.counts: dict[int, set[int]] = defaultdict(set)  # count → seqs that carried it
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.port = port

    def start(self) -> "Recorder":
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connected.wait(15), "recorder could not connect"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        client.subscribe(f"pantau/v1/{self.gateway}/#", qos=1)
        self.subscribed_at = time.time()
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        kind = msg.topic.split("/", 3)[3]
        if kind == "cmd":  # downlink, not the agent's
            return
        doc = json.loads(msg.payload)
        with self.lock:
            self.messages[kind].append(doc)
            if kind == "telemetry":
                for reading in doc["readings"]:
                    if reading["metric"] == "count" and reading["quality"] == "good":
                        self.counts[reading["value"]].add(doc["seq"])

    def values(self) -> set[int]:
        with self.lock:
            return set(self.counts)

    def latest(self, kind: str) -> dict[str, Any] | None:
        with self.lock:
            return self.messages[kind][-1] if self.messages[kind] else None

    def resent_by_us(self) -> list[int]:
        """Counts that arrived in two different messages (re-taken from the buffer)."""
        with self.lock:
            return sorted(c for c, seqs in self.counts.items() if len(seqs) > 1)


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Until ``condition()`` is true (returned); ``timeout`` is a ceiling, not a wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gaps(values: set[int], first: int, last: int, *agents: AgentProcess) -> list[int]:
    """Counts in first..last that never arrived, leaving out ticks the agents logged as
    skipped (a poller starved of CPU skips missed ticks: they were never sampled)."""
    skipped = set().union(*(never_sampled(a.log()) for a in agents))
    return [c for c in range(first, last + 1) if c not in values and c not in skipped]


_SKIPPED = re.compile(r"skipped (\d+) tick\(s\) from ([\d.]+) to ([\d.]+)")


def never_sampled(log: str, interval: float = 0.1) -> set[int]:
    out: set[int] = set()
    for m in _SKIPPED.finditer(log):
        low, high = round(float(m.group(2)) / interval), round(float(m.group(3)) / interval)
        out.update(range(low, high + 1))
    return out


def wait_persisted(broker: Mosquitto, since: float) -> None:
    """Until mosquitto has saved its state (sessions, subscriptions) after ``since``: it
    writes them every autosave_interval, and a SIGKILL loses what it had not yet saved."""
    db = broker.workdir / "mosquitto.db"
    wait_for(lambda: db.exists() and db.stat().st_mtime > since, 10, "mosquitto to save")


def restart(broker: Mosquitto, down_for: float, saved_after: float) -> None:
    """Freeze the broker for a second (the agent's messages go unacknowledged and stay
    in flight), kill it, keep it down, start it again on the same port. The broker must
    have saved the subscribers' sessions (made before ``saved_after``) first."""
    assert broker.proc is not None
    wait_persisted(broker, saved_after)
    os.kill(broker.proc.pid, signal.SIGSTOP)
    time.sleep(1)
    broker.kill()
    time.sleep(down_for - 1)
    broker.start()


def test_broker_outage_of_10s_loses_nothing_and_we_send_nothing_twice(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker(port=free_port())
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}").start()
    agent = agents(write_config(tmp_path / "agent.yaml", gateway_id, broker.port))
    try:
        wait_for(lambda: len(recorder.values()) >= 10, STARTUP, "the first readings")
        first = min(recorder.values())
        restart(broker, down_for=10, saved_after=recorder.subscribed_at)
        back = time.time()
        wait_for(recorder.connected.is_set, 10, "the recorder to reconnect")
        target = count_at(back + 2)
        try:
            wait_for(
                lambda: (
                    max(recorder.values()) >= target
                    and not gaps(recorder.values(), first, target, agent)
                ),
                20,
                "the backlog to drain",
            )
        except AssertionError as exc:
            missing = gaps(recorder.values(), first, target, agent)
            raise AssertionError(f"{exc}: missing {missing[:20]} of {first}..{target}") from None
    finally:
        recorder.stop()
    assert agent.stop() == 0, agent.log()
    values = recorder.values()
    assert not gaps(values, first, target, agent)
    # ~100 readings sampled during the outage came through the buffer, oldest first
    assert target - first >= 120
    assert recorder.resent_by_us() == []
    # the outage caught messages in flight: the MQTT client re-sent those, we did not re-take them
    held = [
        int(line.split("; ")[-1].split()[0])
        for line in agent.log().splitlines()
        if "held for re-sending" in line
    ]
    assert held and max(held) > 0, agent.log()


def test_sigkill_during_outage_loses_at_most_the_commit_window(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker(port=free_port())
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}").start()
    # the default group-commit window (1s): what a power cut or SIGKILL may lose
    config = write_config(
        tmp_path / "agent.yaml", gateway_id, broker.port, buffer={"commit_interval": "1s"}
    )
    agent = agents(config)
    try:
        wait_for(lambda: len(recorder.values()) >= 5, STARTUP, "the first readings")
        first = min(recorder.values())
        broker.stop()
        time.sleep(3)
        killed_at = time.time()
        agent.kill()
        broker.start()
        again = agents(config)
        wait_for(recorder.connected.is_set, 10, "the recorder to reconnect")
        # everything sampled up to one commit window (+ the commit's own time) before the kill
        must_have = count_at(killed_at - 1.5)
        wait_for(
            lambda: not gaps(recorder.values(), first, must_have, agent, again),
            STARTUP,
            "the pre-kill readings",
        )
        resumed = count_at(time.time())
        wait_for(lambda: max(recorder.values()) >= resumed, 10, "readings after the restart")
    finally:
        recorder.stop()
    assert again.stop() == 0, again.log()
    values = recorder.values()
    assert not gaps(values, first, must_have, agent, again)
    lost = gaps(values, first, count_at(killed_at) - 1, agent, again)
    assert len(lost) <= 15, f"lost {len(lost)} readings sampled before the kill: {lost}"


def test_full_buffer_drops_the_oldest_and_health_reports_the_count(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker(port=free_port())
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}").start()
    broker.stop()  # the agent starts offline
    config = write_config(
        tmp_path / "agent.yaml", gateway_id, broker.port, buffer={"max_readings": 20}
    )
    db = tmp_path / "buffer.db"
    agent = agents(config)
    # the agent's own buffer, read beside it: its very first sample, then 15 dropped
    first_buffered = wait_for(lambda: _oldest_item(db), STARTUP, "a first buffered reading")
    dropped_offline = wait_for(
        lambda: (n := _dropped(db)) >= 15 and n, STARTUP, "15 readings dropped from a buffer of 20"
    )
    broker.start()
    try:
        wait_for(recorder.connected.is_set, 10, "the recorder to reconnect")
        wait_for(lambda: len(recorder.values()) >= 20, 10, "the 20 buffered readings")
        # a health report sent once the buffer had room again counts every drop
        wait_for(
            lambda: (
                (recorder.latest("health") or {}).get("buffer_depth", 20) < 10
                and recorder.latest("health")["dropped"] == _dropped(db)  # type: ignore[index]
            ),
            10,
            "a health report with the count",
        )
    finally:
        recorder.stop()
    assert agent.stop() == 0, agent.log()
    values = recorder.values()
    oldest_kept = min(values)
    dropped = _dropped(db)
    assert dropped >= 15
    skipped = never_sampled(agent.log())
    # the agent's first sample: items are numbered from 1, one per sample; the test
    # normally read item 1 itself, a test starved of CPU a later one
    number, count = first_buffered
    earlier = (c for c in range(count - 1, 0, -1) if c not in skipped)
    first_sampled = min([count, *itertools.islice(earlier, number - 1)])
    lost = len([c for c in range(first_sampled, oldest_kept) if c not in skipped])
    # the dropped ones are exactly the oldest: everything sampled before the oldest kept.
    # Once connected, items already handed to MQTT are never dropped (they arrive), so
    # the count is what was lost, no more
    assert dropped_offline <= lost == dropped
    assert not gaps(values, oldest_kept, max(values), agent)
    assert "buffer full" in agent.log()


def _oldest_item(db: Path) -> tuple[int, int] | None:
    """(item number, count) of the oldest reading in the agent's buffer (SQLite in WAL
    mode: read beside the running agent)."""
    row = _query(db, "SELECT id, body FROM items ORDER BY id LIMIT 1")
    return (int(row[0]), int(json.loads(row[1])["value"])) if row else None


def _dropped(db: Path) -> int:
    row = _query(db, "SELECT value FROM meta WHERE key = 'dropped'")
    return int(row[0]) if row else 0


def _query(db: Path, sql: str) -> tuple[Any, ...] | None:
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row: tuple[Any, ...] | None = con.execute(sql).fetchone()
        return row
    except sqlite3.OperationalError:  # tables not made yet
        return None
    finally:
        con.close()


def test_central_offline_its_persistent_session_keeps_everything(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker(port=free_port())
    central = Recorder(broker.port, gateway_id, f"central-{gateway_id}").start()
    central.stop()  # session (and its QoS 1 subscription) stays at the broker
    # a subscriber online all along sees everything the agent publishes, from its first
    # reading: what central's session must hold, however slowly the agent starts
    live = Recorder(broker.port, gateway_id, f"live-{gateway_id}", persistent=False).start()
    agent = agents(write_config(tmp_path / "agent.yaml", gateway_id, broker.port))
    try:
        wait_for(lambda: len(live.values()) >= 30, STARTUP + 3, "30 readings published")
        assert agent.stop() == 0, agent.log()
        # the death comes after the agent's last reading: everything it published is in
        wait_for(lambda: _state(live) == "shutdown", 10, "the agent's goodbye")
    finally:
        live.stop()
    published = live.values()
    back = Recorder(broker.port, gateway_id, f"central-{gateway_id}").start()
    try:
        wait_for(
            lambda: back.values() >= published and _state(back) == "shutdown",
            10,
            "the queued readings",
        )
    finally:
        back.stop()
    values = back.values()
    assert values == published
    first, last = min(values), max(values)
    assert last - first >= 29
    assert not gaps(values, first, last, agent)


def _state(recorder: Recorder) -> str | None:
    """The reason of the last offline state the recorder got, else None."""
    state = recorder.latest("state") or {}
    return state.get("reason") if state.get("status") == "offline" else None
