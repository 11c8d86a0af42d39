"""serial-ascii beyond the golden cases: line splitting of garbage, profile
validation, ports that vanish, and closing during a read."""

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from agent.clock import SystemClock
from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers.serial_ascii import LineError, LineReader
from agent.poller import Poller
from agent.profiles import default_profiles_dir, parse_profile
from tests.agent.conftest import PtyPort
from wire.configfile import ConfigError


def test_line_reader_splits_across_chunks() -> None:
    reader = LineReader(b"\r\n", 64)
    assert reader.feed(b"R12") == []
    assert reader.feed(b"34\r") == []
    assert reader.feed(b"\nR5678\r\nR9") == [b"R1234", b"R5678"]
    assert bytes(reader.buffer) == b"R9"


def test_line_reader_reports_overlong_garbage_and_recovers() -> None:
    reader = LineReader(b"\r", 16)
    out = reader.feed(b"\xff" * 40)
    assert len(out) == 1 and isinstance(out[0], LineError)
    assert "no line end within 16 bytes" in str(out[0])
    assert reader.feed(b"R0001\r") == [b"R0001"]
    long_line = reader.feed(b"x" * 20 + b"\r")
    assert isinstance(long_line[0], LineError)


def test_line_reader_survives_random_bytes() -> None:
    rng = random.Random(4)
    reader = LineReader(b"\r", 32)
    for _ in range(2000):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 50)))
        for item in reader.feed(chunk):
            assert isinstance(item, bytes | LineError)
            if isinstance(item, bytes):
                assert b"\r" not in item and len(item) <= 32
        assert len(reader.buffer) <= 32


def problems_of(tmp_path: Path, body: str) -> str:
    path = tmp_path / "sonar.yaml"
    path.write_text("driver: serial-ascii\n" + body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        parse_profile(path)
    text = "\n".join(info.value.problems)
    assert str(path) in text
    return text


METRIC = "metrics:\n  - {metric: d, group: r}\n"


def test_bad_regex_is_named(tmp_path: Path) -> None:
    assert "pattern: invalid regular expression" in problems_of(
        tmp_path, "pattern: 'R(?P<r>\\d+'\n" + METRIC
    )


def test_pattern_without_named_groups_is_refused(tmp_path: Path) -> None:
    assert "pattern: the pattern needs named groups" in problems_of(
        tmp_path, "pattern: 'R\\d+'\n" + METRIC
    )


def test_metric_naming_a_missing_group_is_refused(tmp_path: Path) -> None:
    text = problems_of(tmp_path, "pattern: 'R(?P<range>\\d+)'\n" + METRIC)
    assert "metrics[0].group: 'r' is not a named group of the pattern (groups: range)" in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("pattern: 'R(?P<r>\\d+)'\nterminator: ''\n" + METRIC, "terminator"),
        ("pattern: 'R(?P<r>\\d+)'\nencoding: klingon\n" + METRIC, "encoding"),
        ("pattern: 'R(?P<r>\\d+)'\nbaud: 9600\n" + METRIC, "baud"),
        ("pattern: 'R(?P<r>\\d+)'\nmetrics: []\n", "metrics"),
        (
            "pattern: 'R(?P<r>\\d+)'\nmetrics:\n  - {metric: d, group: r, invalid: x}\n",
            "metrics[0].invalid",
        ),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, body: str, field: str) -> None:
    assert f": {field}:" in problems_of(tmp_path, body)


def ultrasonic(port: str, timeout: float = 0.3) -> Any:
    section = DeviceSection(
        id="sonar",
        profile="river/ultrasonic-serial",
        interval=1,
        timeout=timeout,
        connection={"port": port},
    )
    return build_device(section, default_profiles_dir(), "test")


def poll_once(device: Any) -> list:
    async def run() -> list:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        samples = await poller.poll(1_700_000_000.0)
        await poller._close()
        return samples

    return asyncio.run(run())


def test_missing_port_gives_bad_readings_naming_it(no_leaked_threads: None) -> None:
    (sample,) = poll_once(ultrasonic("/dev/does-not-exist-ttyX"))
    assert sample.quality == "bad"
    assert "cannot open /dev/does-not-exist-ttyX" in (sample.error or "")


def test_silent_sensor_says_no_data(no_leaked_threads: None, pty_port: PtyPort) -> None:
    (sample,) = poll_once(ultrasonic(pty_port.path, timeout=1.0))
    assert sample.quality == "bad" and sample.error == "no data within 0.75s"


def test_connection_rejects_relative_paths() -> None:
    section = DeviceSection(
        id="s", profile="river/ultrasonic-serial", connection={"port": "ttyUSB0"}
    )
    with pytest.raises(
        ConfigError, match=r"devices\[0\]\.connection\.port: the serial device path.*\[device s\]"
    ):
        build_device(section, default_profiles_dir(), "agent.yaml", 0)


def test_close_during_a_read_returns_quickly(no_leaked_threads: None, pty_port: PtyPort) -> None:
    device = ultrasonic(pty_port.path, timeout=5.0)

    async def run() -> float:
        driver = device.driver
        await driver.open()
        task = asyncio.create_task(driver.read(1_700_000_000.0))
        await asyncio.sleep(0.1)
        task.cancel()
        started = time.monotonic()
        await driver.close()
        took = time.monotonic() - started
        with pytest.raises(asyncio.CancelledError):
            await task
        return took

    assert asyncio.run(run()) < 1.0


def test_sensor_unplugged_while_open_gives_a_bad_reading(no_leaked_threads: None) -> None:
    port = PtyPort()
    device = ultrasonic(port.path)

    async def run() -> list:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        await device.driver.open()
        poller._open = True
        port.close()  # the cable is pulled: the other end of the line is gone
        samples = await poller.poll(1_700_000_000.0)
        await poller._close()
        return samples

    try:
        (sample,) = asyncio.run(run())
    finally:
        port.close()
    assert sample.quality == "bad" and sample.value is None
    assert sample.error == f"{port.path}: Input/output error (errno 5)"
