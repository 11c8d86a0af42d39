"""The tapping-box driver between a POS and a printer: over a pseudo-terminal
pair for serial ports and as a TCP port-9100 proxy in front of a local fake
printer. Bytes must arrive unchanged and at once, also when parsing fails."""

import asyncio
import base64
import contextlib
import logging
import os
import select
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers import DeviceContext, DriverError, EventOut
from agent.drivers.escpos import EscposConnection, EscposDriver
from agent.escpos import ReceiptReader
from agent.profiles import default_profiles_dir, load_profile
from tests.agent import escpos_samples as samples
from wire.configfile import ConfigError
from wire.structs import ValidationError, convert, error_location

IDLE_GAP = 1.0  # long enough that a busy test machine does not split a receipt
EXPECTED_NOS = ["R-000124", "KK/2611/0042", None, "R-000125", "PK-88213"]


def make_driver(connection: dict[str, Any], cls: type[EscposDriver] = EscposDriver) -> EscposDriver:
    _, profile = load_profile(default_profiles_dir(), "tapping-box/escpos-generic")
    profile = msgspec.structs.replace(profile, idle_gap=IDLE_GAP)
    conn = convert(connection, EscposConnection)
    return cls(DeviceContext("tap1", 10.0, 5.0, 0), profile, conn)


class BrokenReader(ReceiptReader):
    def feed(self, data: bytes, now: float | None = None) -> list:
        raise RuntimeError("parser bug")


class BrokenDriver(EscposDriver):
    def new_reader(self) -> ReceiptReader:
        return BrokenReader(self.profile)


def assert_salvaged(events: list[EventOut], data: bytes) -> None:
    """A reader that always fails loses no byte: all of them come as error receipts."""
    assert events, "nothing salvaged"
    for event in events:
        assert event.error == "receipt reader failed: RuntimeError: parser bug"
        assert event.data["ended_by"] == "error" and event.data["total"] is None
    assert b"".join(base64.b64decode(e.data["raw_b64"]) for e in events) == data
    assert sum(e.data["bytes"] for e in events) == len(data)


def chunks(data: bytes, sizes: tuple[int, ...] = (1, 7, 64, 300, 3)) -> Iterator[bytes]:
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


# serial over pseudo-terminals


class Pty:
    """A pty pair: the driver opens ``path``, the test plays the POS or printer on ``fd``."""

    def __init__(self) -> None:
        self.fd, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        for piece in chunks(data):
            os.write(self.fd, piece)

    def read(self, size: int, timeout: float = 5.0) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < size:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                break
            out += os.read(self.fd, 65536)
        return bytes(out)

    def close(self) -> None:
        for fd in (self.fd, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def ptys() -> Iterator[tuple[Pty, Pty]]:
    pos, printer = Pty(), Pty()
    yield pos, printer
    pos.close()
    printer.close()


def serial_driver(
    pos: Pty, printer: Pty, cls: type[EscposDriver] = EscposDriver, **extra: Any
) -> EscposDriver:
    return make_driver(
        {
            "transport": "serial",
            "pos_port": pos.path,
            "printer_port": printer.path,
            "baudrate": 9600,
            **extra,
        },
        cls,
    )


async def wait_for(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_serial_pass_through_forwards_every_byte_and_emits_receipts(ptys, tmp_path):
    pos, printer = ptys
    data = samples.GOLDEN["mixed"]()
    capture = tmp_path / "capture.bin"
    driver = serial_driver(pos, printer, capture_file=str(capture))
    events: list[EventOut] = []

    async def run() -> bytes:
        await driver.open()
        task = asyncio.create_task(driver.stream(events.append))
        try:
            # half a receipt (no cut yet) must reach the printer at once
            head = data[:900]
            await asyncio.to_thread(pos.write, head)
            assert await asyncio.to_thread(printer.read, len(head)) == head
            assert events == []
            _, got = await asyncio.gather(
                asyncio.to_thread(pos.write, data[900:]),
                asyncio.to_thread(printer.read, len(data) - 900),
            )
            # the printer answers a status request: it goes back to the POS
            await asyncio.to_thread(os.write, printer.fd, b"\x12")
            assert await asyncio.to_thread(pos.read, 1) == b"\x12"
            await wait_for(lambda: len(events) == 5)  # the last one ends by the idle gap
            return head + got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await driver.close()

    assert asyncio.run(run()) == data
    assert [e.data["receipt_no"] for e in events] == EXPECTED_NOS
    assert [e.data["ended_by"] for e in events] == ["cut", "cut", "cut", "cut", "idle"]
    assert [e.kind for e in events] == ["receipt"] * 5
    assert [e.error for e in events][2].startswith("image_only")
    assert events[2].data["image_only"] is True
    assert events[0].data["total"] == 166320 and events[0].data["tax"] == 15120
    assert all(abs(e.ts - time.time() * 1000) < 60_000 for e in events)
    raws = b"".join(base64.b64decode(e.data["raw_b64"]) for e in events)
    assert raws == data  # here every byte belongs to a receipt (a drawer kick to the next one)
    assert capture.read_bytes() == data
    assert driver.forwarded == len(data)


def test_serial_forwarding_survives_a_parser_that_always_fails(ptys, caplog):
    pos, printer = ptys
    data = samples.GOLDEN["mixed"]()
    driver = serial_driver(pos, printer, cls=BrokenDriver)
    events: list[EventOut] = []

    async def run() -> bytes:
        await driver.open()
        task = asyncio.create_task(driver.stream(events.append))
        try:
            _, got = await asyncio.gather(
                asyncio.to_thread(pos.write, data), asyncio.to_thread(printer.read, len(data))
            )
            return got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await driver.close()

    assert asyncio.run(run()) == data
    assert driver.parse_failures > 0
    assert_salvaged(events, data)
    assert caplog.text.count("receipt reader failed (RuntimeError: parser bug)") == 1


def test_serial_port_gone_stops_the_stream_with_a_driver_error(ptys):
    pos, printer = ptys
    driver = serial_driver(pos, printer)
    events: list[EventOut] = []

    async def run() -> None:
        await driver.open()
        task = asyncio.create_task(driver.stream(events.append))
        await asyncio.sleep(0.05)
        os.write(pos.fd, b"TOTAL 5.000\n")
        await asyncio.sleep(0.05)
        pos.close()  # the POS cable is pulled
        try:
            await asyncio.wait_for(task, 5)
        finally:
            await driver.close()

    with pytest.raises(DriverError, match="POS → printer"):
        asyncio.run(run())
    # what was under way is still reported when the stream stops
    assert [e.data["total"] for e in events] == [5000]


def test_serial_port_that_does_not_exist_is_named_and_nothing_stays_open(ptys, tmp_path):
    pos, printer = ptys
    missing = str(tmp_path / "ttyUSB9")
    driver = make_driver({"transport": "serial", "pos_port": pos.path, "printer_port": missing})
    with pytest.raises(DriverError, match="ttyUSB9"):
        asyncio.run(driver.open())
    # the POS port opened first was closed again: it can be opened (exclusively) now
    again = serial_driver(pos, printer)
    asyncio.run(again.open())
    asyncio.run(again.close())


class FlakyReader(ReceiptReader):
    """Fails half-way through any chunk that starts with '~'."""

    def feed(self, data: bytes, now: float | None = None) -> list:
        if data.startswith(b"~"):
            super().feed(data[: len(data) // 2], now)
            raise ValueError("flaky")
        return super().feed(data, now)


class FlakyDriver(EscposDriver):
    def new_reader(self) -> ReceiptReader:
        return FlakyReader(self.profile)


def test_a_reader_failure_loses_no_byte_and_the_next_receipts_are_read(caplog):
    from agent.drivers.escpos import _Capture

    caplog.set_level(logging.INFO, logger="agent.drivers.escpos")
    first, second, third = samples.restaurant("R-1"), samples.crlf_receipt(), samples.hotel()
    split = second.index(b"PBJT")
    pieces = [first[:700], first[700:] + second[:split], b"~" + second[split:], third]
    driver = make_driver({"transport": "tcp", "listen": "127.0.0.1:0", "printer": "127.0.0.1:9"})
    driver.__class__ = FlakyDriver
    events: list[EventOut] = []

    async def run() -> None:
        capture = _Capture(driver, events.append)
        for piece in pieces:
            capture.feed(piece)
        capture.end()

    asyncio.run(run())
    numbers = [(e.data["receipt_no"], e.data["ended_by"], e.error) for e in events]
    assert numbers == [
        ("R-1", "cut", None),
        (None, "error", "receipt reader failed: ValueError: flaky"),
        ("F-2026-0451", "cut", None),
    ]
    # the failed receipt: its start before the bad chunk, then the bad chunk; and
    # over all the events every byte once, in order
    raws = [base64.b64decode(e.data["raw_b64"]) for e in events]
    drawer_kick = b"\x1bp\x00\x19\xfa"  # after the first receipt's cut
    assert raws[1] == drawer_kick + second[:split] + b"~" + second[split:]
    assert b"".join(raws) == first + second[:split] + b"~" + second[split:] + third
    assert caplog.text.count("receipt reader failed") == 1
    assert "receipt reader recovered" in caplog.text


def test_a_slow_printer_holds_the_pos_back_without_losing_bytes(ptys, monkeypatch):
    from agent.drivers import escpos as module

    monkeypatch.setattr(module, "PAUSE_BYTES", 32 << 10)
    monkeypatch.setattr(module, "RESUME_BYTES", 4 << 10)
    pos, printer = ptys
    data = samples.restaurant() * 300  # about 550 kB
    driver = serial_driver(pos, printer)
    events: list[EventOut] = []

    async def run() -> bytes:
        await driver.open()
        task = asyncio.create_task(driver.stream(events.append))
        writer = asyncio.create_task(asyncio.to_thread(pos.write, data))
        try:
            await asyncio.sleep(0.3)  # the printer takes nothing yet
            assert not writer.done()  # so the POS is held back
            got = await asyncio.to_thread(printer.read, len(data), 20)
            await writer
            return got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await driver.close()

    assert asyncio.run(run()) == data
    assert len(events) == 300
    assert all(e.data["total"] == 166320 for e in events)


# network printers: the TCP proxy


class FakePrinter:
    """A network printer on a free loopback port: records jobs, answers DLE EOT."""

    def __init__(self) -> None:
        self.jobs: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._job, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _job(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        job = bytearray()
        answered = 0
        while data := await reader.read(4096):
            job += data
            asked = job.count(b"\x10\x04\x01")  # DLE EOT 1: transmit printer status
            writer.write(b"\x16" * (asked - answered))  # online
            answered = asked
        self.jobs.append(bytes(job))
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def print_job(port: int, data: bytes) -> bytes:
    """The POS side: send a job in pieces, collect what comes back, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in chunks(data, (500, 1, 33, 4096)):
        writer.write(piece)
        await writer.drain()
    await asyncio.sleep(0.05)
    writer.write_eof()
    back = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    return back


async def with_proxy(
    driver_cls: type[EscposDriver], jobs: list[bytes]
) -> tuple[FakePrinter, list[EventOut], list[bytes]]:
    printer = FakePrinter()
    await printer.start()
    driver = make_driver(
        {"transport": "tcp", "listen": "127.0.0.1:0", "printer": f"127.0.0.1:{printer.port}"},
        driver_cls,
    )
    events: list[EventOut] = []
    task = asyncio.create_task(driver.stream(events.append))
    try:
        await asyncio.wait_for(driver.listening.wait(), 5)
        assert driver.listen_address is not None
        port = driver.listen_address[1]
        answers = [await print_job(port, job) for job in jobs]
        await wait_for(lambda: len(printer.jobs) == len(jobs))
        return printer, events, answers
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await printer.stop()


def test_tcp_proxy_forwards_jobs_unchanged_and_emits_receipts():
    jobs = [samples.GOLDEN["mixed"](), samples.hotel()]
    printer, events, answers = asyncio.run(with_proxy(EscposDriver, jobs))
    assert printer.jobs == jobs
    # the printer's status answers reached the POS
    assert answers == [b"\x16" * jobs[0].count(b"\x10\x04\x01"), b""]
    assert len(answers[0]) == 3
    assert [e.data["receipt_no"] for e in events] == [*EXPECTED_NOS, "F-2026-0451"]
    assert events[4].data["ended_by"] == "end"  # the job closed before the idle gap
    assert events[5].data["total"] == 3021975


def test_tcp_proxy_forwards_unchanged_when_the_parser_raises(caplog):
    jobs = [samples.GOLDEN["mixed"]()]
    printer, events, _ = asyncio.run(with_proxy(BrokenDriver, jobs))
    assert printer.jobs == jobs
    assert_salvaged(events, jobs[0])
    assert "receipt reader failed" in caplog.text


def test_tcp_proxy_with_the_printer_off_refuses_the_job_and_keeps_running(caplog):
    async def run() -> bytes:
        printer = FakePrinter()
        await printer.start()
        dead_port = printer.port
        await printer.stop()
        driver = make_driver(
            {"transport": "tcp", "listen": "127.0.0.1:0", "printer": f"127.0.0.1:{dead_port}"}
        )
        task = asyncio.create_task(driver.stream(lambda e: None))
        try:
            await asyncio.wait_for(driver.listening.wait(), 5)
            assert driver.listen_address is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", driver.listen_address[1])
            back = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert not task.done()
            return back
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(run()) == b""
    assert "unreachable" in caplog.text and "print job refused" in caplog.text


# connection settings


@pytest.mark.parametrize(
    ("connection", "where", "says"),
    [
        ({"transport": "serial", "pos_port": "/dev/ttyUSB0"}, (), "needs printer_port"),
        (
            {"transport": "serial", "pos_port": "/dev/ttyUSB0", "printer_port": "/dev/ttyUSB0"},
            (),
            "pos_port and printer_port must be different",
        ),
        (
            {
                "transport": "serial",
                "pos_port": "/dev/a",
                "printer_port": "/dev/b",
                "listen": "0.0.0.0:9100",
            },
            (),
            "listen not used with transport serial",
        ),
        ({"transport": "tcp", "listen": "0.0.0.0:9100"}, (), "transport tcp needs printer"),
        (
            {"transport": "tcp", "listen": "0.0.0.0", "printer": "10.0.0.5:9100"},
            ("listen",),
            "expected host:port",
        ),
        (
            {"transport": "tcp", "listen": "0.0.0.0:99999", "printer": "10.0.0.5:9100"},
            ("listen",),
            "port must be",
        ),
        (
            {"transport": "tcp", "listen": "0.0.0.0:9100", "printer": "[::1:9100"},
            ("printer",),
            "invalid host",
        ),
        ({"transport": "usb"}, ("transport",), "Invalid enum value 'usb'"),
        (
            {"transport": "serial", "pos_port": "/dev/a", "printer_port": "/dev/b", "stopbits": 3},
            (),
            "stopbits must be 1, 1.5 or 2",
        ),
        (
            {"transport": "serial", "pos_port": "/dev/a", "printer_port": "/dev/b", "baudrate": 10},
            ("baudrate",),
            ">= 50",
        ),
        (
            {"transport": "serial", "pos_port": "/dev/a", "printer_port": "/dev/b", "baud": 9600},
            ("baud",),
            "unknown key",
        ),
    ],
)
def test_bad_connections_are_refused(connection, where, says):
    with pytest.raises(ValidationError) as info:
        convert(connection, EscposConnection)
    loc, message = error_location(info.value)
    assert loc == where
    assert says in message


def test_device_entry_builds_an_escpos_driver_and_names_bad_keys():
    section = convert(
        {
            "id": "resto-1",
            "profile": "tapping-box/escpos-generic",
            "connection": {
                "transport": "tcp",
                "listen": "[::]:9100",
                "printer": "192.168.1.50:9100",
            },
        },
        DeviceSection,
    )
    device = build_device(section, default_profiles_dir(), "agent.yaml", 0)
    assert isinstance(device.driver, EscposDriver)
    assert device.driver.connection.listen == "[::]:9100"
    bad = msgspec.structs.replace(
        section, connection={"transport": "tcp", "listen": "0.0.0.0:9100"}
    )
    with pytest.raises(ConfigError) as info:
        build_device(bad, default_profiles_dir(), "agent.yaml", 0)
    [problem] = info.value.problems
    assert problem.startswith("agent.yaml: devices[0].connection")
    assert "connection" in problem and "resto-1" in problem and "needs printer" in problem


def test_capture_file_stops_at_its_limit(ptys, tmp_path):
    pos, printer = ptys
    capture = tmp_path / "cap.bin"
    driver = serial_driver(pos, printer, capture_file=str(capture), capture_max_bytes=100)
    driver_path = Path(capture)

    async def run() -> None:
        await driver.open()
        driver.write_capture(b"x" * 60)
        driver.write_capture(b"y" * 60)
        driver.write_capture(b"z" * 60)
        await driver.close()

    asyncio.run(run())
    assert driver_path.read_bytes() == b"x" * 60 + b"y" * 40
