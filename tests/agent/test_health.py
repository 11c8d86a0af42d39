"""Birth, death and health: vitals readers on files of our own, and a running agent."""

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import wire
from agent import vitals
from agent.mqtt import backoff_delay
from scripts.services import Mosquitto
from tests.agent.test_faults import STARTUP, Recorder, agent_factory, wait_for, write_config


@pytest.fixture
def agents() -> Iterator[Callable]:
    yield from agent_factory()


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    for index, (kind, milli) in enumerate([("acpitz", "27800"), ("cpu-thermal", "48312")]):
        zone = tmp_path / f"thermal_zone{index}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert vitals.cpu_temp_c(tmp_path) == 48.3


def test_cpu_temperature_is_none_without_thermal_zones(tmp_path: Path) -> None:
    assert vitals.cpu_temp_c(tmp_path / "absent") is None
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("not a number")
    assert vitals.cpu_temp_c(tmp_path) is None


def test_memory_used_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000000 kB\nMemFree: 100 kB\nMemAvailable:   250000 kB\n")
    assert vitals.mem_used_pct(meminfo) == 75.0
    meminfo.write_text("MemTotal: 1000 kB\n")
    assert vitals.mem_used_pct(meminfo) is None


def test_disk_free_of_a_buffer_dir_not_made_yet(tmp_path: Path) -> None:
    free = vitals.disk_free_mb(tmp_path / "not" / "yet")
    assert free is not None and free > 0


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    assert backoff_delay(0, 1, 60, rand=lambda: 0.0) == 0.5
    assert backoff_delay(0, 1, 60, rand=lambda: 1.0) == 1.0
    assert backoff_delay(3, 1, 60, rand=lambda: 1.0) == 8.0
    assert backoff_delay(10, 1, 60, rand=lambda: 0.0) == 30.0
    assert backoff_delay(500, 1, 60, rand=lambda: 1.0) == 60.0
    delays = {backoff_delay(4, 1, 60) for _ in range(50)}
    assert len(delays) > 40 and all(8 <= d <= 16 for d in delays)


def test_birth_health_and_death(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker()
    devices = [
        {"id": "counter-1", "profile": "simulated/counter", "interval": "200ms"},
        {"id": "river-1", "profile": "simulated/sine", "interval": "1s"},
        {
            "id": "broken-1",
            "profile": "simulated/counter",
            "connection": {"fail": True},
            "interval": "200ms",
        },
    ]
    config = write_config(tmp_path / "agent.yaml", gateway_id, broker.port, devices=devices)
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}", persistent=False).start()
    agent = agents(config)
    try:
        wait_for(
            lambda: (
                len(recorder.messages["health"]) >= 2
                and recorder.latest("health")["devices"]["broken-1"]["status"] == "failing"
            ),  # type: ignore[index]
            STARTUP,
            "health reports",
        )
        birth = wire.decode("state", _raw(recorder.messages["state"][0]), gateway_id)
        health = wire.decode("health", _raw(recorder.latest("health")), gateway_id)
    finally:
        recorder.stop()
    assert birth.status == "online"
    assert birth.agent_version == wire.__version__
    assert birth.profiles == ["simulated/counter", "simulated/sine"]
    assert [d.id for d in birth.devices] == ["counter-1", "river-1", "broken-1"]
    assert birth.devices[0].driver == "simulated"
    assert health.site == "test-site"
    assert health.devices["counter-1"].status == "ok"
    broken = health.devices["broken-1"]
    assert broken.error == "simulated failure"
    assert broken.failing_since is not None and broken.failing_since <= health.ts
    assert health.buffer_depth is not None and health.buffer_depth >= 0
    assert health.dropped == 0
    assert health.load1 is not None and health.mem_used_pct is not None
    assert health.disk_free_mb is not None and health.disk_free_mb > 0
    assert health.uptime_s is not None and health.uptime_s > 0
    # the will: killed without a goodbye, the broker publishes the retained death
    agent.signal(signal.SIGKILL)
    agent.proc.wait()
    _assert_retained_state(broker, gateway_id, "connection lost")
    # a clean stop says so itself
    again = agents(config)
    late = Recorder(broker.port, gateway_id, f"late-{gateway_id}", persistent=False).start()
    try:
        wait_for(lambda: (late.latest("state") or {}).get("status") == "online", STARTUP, "rebirth")
    finally:
        late.stop()
    assert again.stop() == 0
    _assert_retained_state(broker, gateway_id, "shutdown")


def _raw(doc: dict | None) -> bytes:
    return json.dumps(doc).encode()


def _assert_retained_state(broker: Mosquitto, gateway: str, reason: str) -> None:
    """What a new subscriber gets: the retained state, offline for ``reason``. A will
    is published once the broker has seen the connection drop: ask again until then."""

    def offline() -> dict | None:
        probe = Recorder(broker.port, gateway, f"probe-{time.monotonic_ns()}", persistent=False)
        probe.start()
        try:
            state = wait_for(lambda: probe.latest("state"), 10, "the retained state")
        finally:
            probe.stop()
        return state if state and state["status"] == "offline" else None

    state = wait_for(offline, 15, "an offline state")
    assert state is not None and state["reason"] == reason, state
