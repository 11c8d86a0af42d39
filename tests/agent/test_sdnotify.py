"""sd_notify over a real unix datagram socket, from the library and from the agent."""

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.buffer import SqliteBuffer
from agent.sdnotify import Notifier
from scripts.services import free_port
from tests.agent.test_faults import STARTUP, agent_factory, count_at, gaps, write_config


@pytest.fixture
def agents() -> Iterator[Callable]:
    yield from agent_factory()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield sock, path
    sock.close()


def receive_until(sock: socket.socket, wanted: str, timeout: float = 10) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            seen.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            break
        if wanted in seen:
            return seen
    raise AssertionError(f"{wanted} not received; got {seen}")


def test_notifier_sends_states_to_the_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notifier.watchdog_s == 2.0
    assert notifier.ready("ok")
    assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    assert notifier.watchdog()
    assert sock.recv(100) == b"WATCHDOG=1"


def test_notifier_abstract_socket_and_absent_socket() -> None:
    name = f"pantau-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(100) == b"STOPPING=1"
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready() and quiet.watchdog_s is None
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/sock"}).ready()
    other_pid = Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_s is None


def test_agent_notifies_ready_watchdog_stopping_and_flushes_on_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str], agents: Callable
) -> None:
    sock, path = notify_socket
    # no broker at all: the agent still starts, samples, and stops cleanly
    config = write_config(
        tmp_path / "agent.yaml", "gw-notify", free_port(), buffer={"commit_interval": "5s"}
    )
    agent = agents(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    assert "READY=1" in receive_until(sock, "READY=1", timeout=STARTUP)
    seen = receive_until(sock, "WATCHDOG=1", timeout=3)
    watchdogs = sum(1 for line in receive_until(sock, "WATCHDOG=1", 3) if line == "WATCHDOG=1")
    assert watchdogs >= 1 and "WATCHDOG=1" in seen
    time.sleep(1)
    stopped_at = time.time()
    agent.signal(signal.SIGTERM)
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")
    assert agent.proc.wait(10) == 0, agent.log()
    # the 5s commit window had not come round: SIGTERM committed what was sampled
    buffer = SqliteBuffer(tmp_path / "buffer.db")
    try:
        items = buffer.take("telemetry", 10_000, 10_000_000)
    finally:
        buffer.close()
    counts = [json.loads(i.body)["value"] for i in items]
    assert len(counts) == len(set(counts))
    # everything sampled up to the SIGTERM is there (a poller starved of CPU skips ticks:
    # logged, never sampled)
    assert gaps(set(counts), counts[0], count_at(stopped_at) - 1, agent) == []
