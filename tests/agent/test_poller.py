"""Scheduling at the driver seam: exact cadence while a neighbour hangs, missed
ticks skipped not queued, one log line when a device starts failing and one when it
recovers. Driven by FakeClock; one test runs in real time over real Modbus TCP."""

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from agent.clock import Clock, FakeClock, SystemClock
from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers import DeviceContext, Driver, DriverError, Sample
from agent.poller import Poller
from agent.profiles import default_profiles_dir

START = 1_700_000_000.0  # aligned to every interval used here


class Steady(Driver):
    """Answers at once."""

    name = "test-steady"

    async def read(self, at: float) -> list[Sample]:
        return [Sample("value", at, "s")]

    def metrics(self) -> list[tuple[str, str | None]]:
        return [("value", "s")]


class Hung(Steady):
    """Never answers (a device that accepted the request and went silent)."""

    async def read(self, at: float) -> list[Sample]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Slow(Steady):
    """Each poll takes ``took`` seconds of the injected clock."""

    def __init__(self, device: DeviceContext, clock: Clock, took: float) -> None:
        super().__init__(device, None, None)
        self.clock = clock
        self.took = took

    async def read(self, at: float) -> list[Sample]:
        await self.clock.sleep_until(self.clock.time() + self.took)
        return await super().read(at)


class Flaky(Steady):
    """Fails on the polls whose number is in ``failing`` (1-based)."""

    def __init__(self, device: DeviceContext, failing: set[int]) -> None:
        super().__init__(device, None, None)
        self.failing = failing
        self.polls = 0

    async def read(self, at: float) -> list[Sample]:
        self.polls += 1
        if self.polls in self.failing:
            raise DriverError("no answer from sensor")
        return await super().read(at)


def context(name: str, interval: float = 1.0, timeout: float = 0.05) -> DeviceContext:
    return DeviceContext(id=name, interval=interval, timeout=timeout, retries=0)


class Recorder:
    def __init__(self) -> None:
        self.ticks: dict[str, list[int]] = {}
        self.bad: dict[str, int] = {}

    def __call__(self, device: str, ts: int, samples: list[Sample]) -> None:
        self.ticks.setdefault(device, []).append(ts)
        if any(s.quality == "bad" for s in samples):
            self.bad[device] = self.bad.get(device, 0) + 1


async def run_for(pollers: list[Poller], clock: FakeClock, seconds: int, step: float) -> None:
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(0)
    for _ in range(int(seconds / step)):
        await clock.advance(step)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_nine_devices_keep_their_exact_cadence_while_one_never_answers() -> None:
    clock = FakeClock(START)
    sink = Recorder()
    pollers = [Poller(Steady(context(f"dev{i}"), None, None), sink, clock) for i in range(9)]
    dead = Poller(Hung(context("dead", timeout=0.05), None, None), sink, clock)

    async def main() -> None:
        # the dead device's timeout runs in real time: let real time pass between ticks
        tasks = [asyncio.create_task(p.run()) for p in [*pollers, dead]]
        await asyncio.sleep(0)
        for _ in range(30):
            await clock.advance(1.0)
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    expected = [round((START + k) * 1000) for k in range(1, 31)]
    for i in range(9):
        assert sink.ticks[f"dev{i}"] == expected, f"dev{i} lost or shifted a tick"
        assert pollers[i].health.skipped_ticks == 0
    assert sink.bad.get("dead", 0) >= 1 and "dead" not in {f"dev{i}" for i in range(9)}
    assert set(sink.ticks["dead"]) <= set(expected)  # its ticks are on the grid too
    assert all(sink.bad.get(f"dev{i}", 0) == 0 for i in range(9))
    assert dead.health.failing_since is not None
    assert dead.health.last_error == "timeout after 0.05s"


@pytest.mark.parametrize("interval", [0.1, 0.25, 1.0, 60.0])
def test_ticks_are_aligned_to_the_interval_without_drift(interval: float) -> None:
    clock = FakeClock(START + interval * 0.37)  # start between two ticks
    sink = Recorder()
    poller = Poller(Steady(context("d", interval=interval), None, None), sink, clock)
    asyncio.run(run_for([poller], clock, seconds=int(interval * 200) or 1, step=interval / 4))
    ticks = sink.ticks["d"]
    assert len(ticks) >= 199
    grid = round(interval * 1000)
    first = math.ceil((START + interval * 0.37) / interval) * grid
    assert ticks == [first + k * grid for k in range(len(ticks))]


def test_missed_ticks_are_skipped_not_queued() -> None:
    clock = FakeClock(START)
    sink = Recorder()
    poller = Poller(Slow(context("slow", timeout=60), clock, took=2.5), sink, clock)
    asyncio.run(run_for([poller], clock, seconds=13, step=0.5))
    # polls at +1 (ends +3.5), +4 (ends +6.5), +7, +10 (ends +12.5): ticks in between skipped
    assert sink.ticks["slow"] == [round((START + k) * 1000) for k in (1, 4, 7, 10)]
    assert poller.health.skipped_ticks == 8  # two per slow poll, counted once each
    assert poller.health.polls == 4


def test_failing_device_logs_once_when_failing_and_once_when_recovered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(START)
    sink = Recorder()
    driver = Flaky(context("gauge"), failing={2, 3, 4, 7})
    poller = Poller(driver, sink, clock)
    with caplog.at_level(logging.INFO, logger="agent.poller"):
        asyncio.run(run_for([poller], clock, seconds=9, step=1.0))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "agent.poller"]
    assert lines == [
        ("WARNING", "device gauge: failing: no answer from sensor"),
        ("INFO", "device gauge: recovered"),
        ("WARNING", "device gauge: failing: no answer from sensor"),
        ("INFO", "device gauge: recovered"),
    ]
    assert sink.bad["gauge"] == 4
    assert poller.health.failures == 4 and poller.health.failing_since is None


class Hurried(FakeClock):
    """Every tick is due at once: a poller on it polls back to back, yielding between."""

    async def sleep_until(self, deadline: float) -> None:
        self._now = max(self._now, deadline)
        await asyncio.sleep(0)


def test_a_poller_stops_when_cancelled_at_any_step_of_a_failing_poll() -> None:
    """Stopping the agent cancels every poller. A cancel that landed just as a failed
    device's driver.close() had finished was lost (asyncio.wait_for on Python 3.11
    returns the result instead), the poller polled on and the agent never exited."""

    async def cancelled_after(steps: int) -> bool:
        clock = Hurried(START)
        driver = Flaky(context("g"), failing=set(range(1, 100_000)))
        task = asyncio.create_task(Poller(driver, lambda *a: None, clock).run())
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(50):
            if task.done():
                break
            await asyncio.sleep(0)
        stopped = task.cancelled()
        while not task.done():  # don't leave it to asyncio.run's clean-up
            task.cancel()
            await asyncio.sleep(0)
        return stopped

    went_on = [steps for steps in range(40) if not asyncio.run(cancelled_after(steps))]
    assert went_on == [], f"cancelled after these numbers of steps, the poller went on: {went_on}"


def test_bad_readings_name_every_metric_and_the_error() -> None:
    clock = FakeClock(START)
    got: list[list[Sample]] = []
    poller = Poller(Flaky(context("g"), failing={1}), lambda d, ts, s: got.append(s), clock)
    asyncio.run(poller.poll(START))
    assert [(s.metric, s.value, s.unit, s.quality, s.error) for s in got[0]] == [
        ("value", None, "s", "bad", "no answer from sensor")
    ]


def test_real_modbus_devices_keep_cadence_next_to_a_silent_one(
    no_leaked_threads: None, modbus_server: Any, silent_tcp: Any, tmp_path: Path
) -> None:
    """Real time, real pymodbus server: nine devices every 0.3 s, one that never replies."""
    server = modbus_server({1: {"holding": {0: [1234, 3766, 0]}}})
    interval = 0.3

    def device(name: str, port: int, timeout: float) -> Any:
        section = DeviceSection(
            id=name,
            profile="river/radar-level-mm",
            interval=interval,
            timeout=timeout,
            connection={"transport": "tcp", "host": "127.0.0.1", "port": port},
        )
        return build_device(section, default_profiles_dir(), "test")

    devices = [device(f"lvl{i}", server.port, 0.25) for i in range(9)]
    devices.append(device("dead", silent_tcp.port, 1.0))  # blocks for three intervals
    sink = Recorder()

    async def main() -> None:
        clock = SystemClock()
        pollers = [Poller(d.driver, sink, clock) for d in devices]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        await asyncio.sleep(2.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    grid = round(interval * 1000)
    for i in range(9):
        ticks = sink.ticks[f"lvl{i}"]
        assert len(ticks) >= 6
        assert all(t % grid == 0 for t in ticks)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, grid)), f"lvl{i} missed a tick"
        assert sink.bad.get(f"lvl{i}", 0) == 0
    assert sink.bad["dead"] >= 1
    assert len(sink.ticks["dead"]) < len(sink.ticks["lvl0"])  # its ticks were skipped


class Mistyped(Driver):
    """A buggy driver: text for a number, a number for a bool and for a string."""

    name = "test-mistyped"

    async def read(self, at: float) -> list[Sample]:
        return [
            Sample("level_cm", "banjir"),
            Sample("level_cm_ok", 12.5),
            Sample("pump_on", 1),
            Sample("pump_ok", True),
            Sample("label", 3),
            Sample("alarm", True),  # a bool where a number is declared: stored as 1
        ]

    def metrics(self) -> list[tuple[str, str | None]]:
        return [(m, None) for m in ("level_cm", "level_cm_ok", "pump_on", "pump_ok", "alarm")]

    def value_types(self) -> dict[str, Any]:
        return {**super().value_types(), "pump_on": "bool", "pump_ok": "bool", "label": "string"}


def test_a_value_of_another_type_than_the_profile_declares_is_a_bad_reading() -> None:
    got: list[Sample] = []
    device = DeviceContext(id="m", interval=1.0, timeout=1.0, retries=0)
    poller = Poller(Mistyped(device, None, None), lambda d, ts, s: got.extend(s), FakeClock(START))
    asyncio.run(poller.poll(START))
    bad = {s.metric: s.error for s in got if s.quality == "bad"}
    assert bad == {
        "level_cm": "wrong type: the profile declares number, got string 'banjir'",
        "pump_on": "wrong type: the profile declares bool, got number 1",
        "label": "wrong type: the profile declares string, got number 3",
    }
    assert all(s.value is None for s in got if s.quality == "bad")
    assert {s.metric: s.value for s in got if s.quality == "good"} == {
        "level_cm_ok": 12.5,
        "pump_ok": True,
        "alarm": True,
    }
    assert poller.health.wrong_type == 3


def test_agent_code_bounds_waits_with_asyncio_timeout_not_wait_for() -> None:
    """asyncio.wait_for on Python 3.11 (Raspberry Pi OS) returns the awaited result when a
    cancel lands as it finishes: the cancel is lost and a stopping agent hangs. Agent
    code uses ``async with asyncio.timeout(...)``, which keeps the cancel."""
    root = Path(__file__).resolve().parents[2] / "agent"
    users = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "wait_for(" in line and not line.lstrip().startswith("#")
    ]
    assert users == []
