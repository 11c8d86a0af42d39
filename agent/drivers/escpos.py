"""``escpos``: a tapping box between a POS and its ESC/POS receipt printer.

Pass-through first: every byte from the POS is written to the printer as soon
as it is read, unchanged, and every byte from the printer (status answers,
XON/XOFF) goes back to the POS. Only then is a copy fed to the receipt reader
(:mod:`agent.escpos`). A parsing failure is logged and the reader restarted;
it never stops or delays forwarding, so the shop's printing never breaks
because of the box.

Two transports, chosen by the device's ``connection``:

- ``serial``: ``{transport: serial, pos_port: /dev/ttyUSB0, printer_port:
  /dev/ttyUSB1, baudrate: 9600}``, both ports opened with pyserial and read
  and written without blocking on the event loop;
- ``tcp``: ``{transport: tcp, listen: 0.0.0.0:9100, printer:
  192.168.1.50:9100}``, a proxy for network printers: the POS prints to the
  box, the box connects to the printer for each print job.

Each receipt becomes an event ``kind: receipt`` (see docs/tapping-box.md).
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import msgspec
import serial

from agent.drivers.base import (
    ConnectionBase,
    DeviceContext,
    DriverError,
    EventOut,
    PortClaim,
    StreamDriver,
)
from agent.escpos import EscposProfile, ReceiptReader
from agent.escpos.assembler import Mark, ReceiptAssembler
from agent.escpos.receipt import salvage_record
from wire import Duration

log = logging.getLogger(__name__)

PAUSE_BYTES = 1 << 20
"""Bytes waiting for a slow printer before the box stops reading from the POS."""
RESUME_BYTES = 64 << 10
READ_SIZE = 65536
DRAIN_AFTER_JOB = 2.0
"""Seconds to wait for the printer's last answers after the POS closed a TCP job."""


def split_address(value: str) -> tuple[str, int]:
    """``"192.168.1.50:9100"`` or ``"[::1]:9100"`` → (host, port)."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r}: expected host:port, e.g. 192.168.1.50:9100")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: port must be a number 0-65535")
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"{value!r}: invalid host")
    return host, int(port_text)


class Address(str):
    """``host:port``, written back as ``host:port`` or ``[v6 host]:port``."""

    @classmethod
    def parse(cls, value: Any) -> "Address":
        if not isinstance(value, str):
            raise ValueError("expected host:port, e.g. 192.168.1.50:9100")
        host, port = split_address(value)
        return cls(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


class EscposConnection(ConnectionBase):
    transport: Literal["serial", "tcp"]
    # serial
    pos_port: str | None = None
    printer_port: str | None = None
    baudrate: Annotated[int, msgspec.Meta(ge=50, le=4_000_000)] = 9600
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = 1.0
    rtscts: bool = False
    # tcp
    listen: Address | None = None
    printer: Address | None = None
    connect_timeout: Duration = Duration(5.0)
    # both: keep a copy of every byte from the POS, to check with `pantau-agent receipts`
    capture_file: Path | None = None
    capture_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 16 << 20

    def __post_init__(self) -> None:
        if self.stopbits not in (1, 1.5, 2):
            raise ValueError("stopbits must be 1, 1.5 or 2")
        if self.transport == "serial":
            missing = [k for k in ("pos_port", "printer_port") if getattr(self, k) is None]
            extra = [k for k in ("listen", "printer") if getattr(self, k) is not None]
        else:
            missing = [k for k in ("listen", "printer") if getattr(self, k) is None]
            extra = [k for k in ("pos_port", "printer_port") if getattr(self, k) is not None]
        if missing:
            raise ValueError(f"transport {self.transport} needs {' and '.join(missing)}")
        if extra:
            raise ValueError(f"{', '.join(extra)} not used with transport {self.transport}")
        if self.transport == "serial" and self.pos_port == self.printer_port:
            raise ValueError("pos_port and printer_port must be different ports")


class _Capture:
    """One receipt reader fed after forwarding; never raises into the forwarder.

    If the reader itself fails (a bug, not bad bytes: bad bytes give receipts
    with an ``error``), the bytes it was working on are kept and sent as a
    receipt with ``error: "receipt reader failed: ..."`` and ``ended_by:
    "error"`` once the reader works again, after the idle gap, when they reach
    ``max_receipt_bytes``, or when the stream ends. A fresh reader takes over.
    """

    def __init__(self, driver: "EscposDriver", emit: Callable[[EventOut], None]) -> None:
        self.driver = driver
        self.emit = emit
        self.reader = driver.new_reader()
        self.limit = driver.profile.max_receipt_bytes
        self._timer: asyncio.TimerHandle | None = None
        self._failure: str | None = None  # while failing: the first error
        self._salvage = bytearray()
        self._salvage_size = 0

    def feed(self, data: bytes) -> None:
        self.driver.write_capture(data)
        mark = None
        try:
            mark = self.reader.assembler.mark()
            records = self.reader.feed(data, time.monotonic())
        except Exception as exc:
            self._failed(exc, mark, data)
        else:
            if self._failure is not None:
                log.info("device %s: receipt reader recovered", self.driver.device.id)
                self._send_salvage()
            self._send(records)
        self._arm()

    def idle(self) -> None:
        self._timer = None
        self._send_salvage()
        try:
            records = self.reader.idle(time.monotonic())
        except Exception as exc:
            self._failed(exc, None, b"")
            return
        self._send(records)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            records = self.reader.end()
        except Exception as exc:
            self._failed(exc, None, b"")
            records = []
        self._send_salvage()
        self._send(records)

    def _arm(self) -> None:
        gap = self.reader.profile.idle_gap or 2.0  # salvage is sent after a pause even so
        if not self._salvage_size and (
            self.reader.profile.idle_gap <= 0 or not self.reader.assembler.pending
        ):
            return
        if self._timer is not None:
            self._timer.cancel()
        # a hair later than the gap, so the reader sees the full gap has passed
        self._timer = asyncio.get_running_loop().call_later(gap + 0.01, self.idle)

    def _send(self, records: list[tuple[dict[str, Any], str | None]]) -> None:
        for data, error in records:
            self._emit(data, error)

    def _emit(self, data: dict[str, Any], error: str | None) -> None:
        event = EventOut(kind="receipt", ts=round(time.time() * 1000), data=data, error=error)
        self.driver.receipts += 1
        try:
            self.emit(event)
        except Exception:
            log.exception("device %s: could not queue a receipt", self.driver.device.id)

    def _failed(self, exc: Exception, mark: Mark | None, data: bytes) -> None:
        self.driver.parse_failures += 1
        reason = f"{type(exc).__name__}: {exc}"
        if self._failure is None:
            self._failure = reason
            log.warning(
                "device %s: receipt reader failed (%s); bytes still forwarded, reader restarted",
                self.driver.device.id,
                reason,
            )
        raw = ReceiptAssembler.salvage(mark, data) if mark is not None else data
        room = self.limit - len(self._salvage)
        self._salvage += raw[: max(0, room)]
        self._salvage_size += len(raw)
        if self._salvage_size >= self.limit:
            self._send_salvage()
        self.reader = self.driver.new_reader()

    def _send_salvage(self) -> None:
        if self._salvage_size:
            data = salvage_record(bytes(self._salvage), self._salvage_size)
            self._emit(data, f"receipt reader failed: {self._failure}")
        self._salvage.clear()
        self._salvage_size = 0
        self._failure = None


class _Pipe:
    """Copies bytes from one non-blocking fd to another on the event loop.

    Bytes are written as soon as they are read; what the destination can't
    take yet waits in memory, and past PAUSE_BYTES reading stops until the
    destination catches up (the serial line's own flow control then holds
    the sender back, as it would with the printer alone).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: int,
        dst: int,
        *,
        name: str,
        failed: asyncio.Future[str],
        on_data: Callable[[bytes], None] | None = None,
    ) -> None:
        self.loop, self.src, self.dst, self.name = loop, src, dst, name
        self.failed = failed
        self.on_data = on_data
        self.pending = bytearray()
        self.bytes = 0
        self._reading = False
        self._writing = False

    def start(self) -> None:
        self._read_on()

    def stop(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.src)
            self._reading = False
        if self._writing:
            self.loop.remove_writer(self.dst)
            self._writing = False

    def _read_on(self) -> None:
        if not self._reading:
            self.loop.add_reader(self.src, self._readable)
            self._reading = True

    def _fail(self, reason: str) -> None:
        self.stop()
        if not self.failed.done():
            self.failed.set_result(f"{self.name}: {reason}")

    def _readable(self) -> None:
        try:
            data = os.read(self.src, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"read failed: {exc.strerror or exc}")
            return
        if not data:
            self._fail("port closed (cable or adapter unplugged?)")
            return
        self.bytes += len(data)
        self._forward(data)
        if self.on_data is not None:
            self.on_data(data)  # parse after forwarding; _Capture never raises

    def _forward(self, data: bytes) -> None:
        if not self.pending:
            try:
                written = os.write(self.dst, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._fail(f"write failed: {exc.strerror or exc}")
                return
            data = data[written:]
            if not data:
                return
        self.pending += data
        if not self._writing:
            self.loop.add_writer(self.dst, self._writable)
            self._writing = True
        if len(self.pending) > PAUSE_BYTES and self._reading:
            self.loop.remove_reader(self.src)
            self._reading = False

    def _writable(self) -> None:
        try:
            written = os.write(self.dst, self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"write failed: {exc.strerror or exc}")
            return
        del self.pending[:written]
        if not self.pending:
            self.loop.remove_writer(self.dst)
            self._writing = False
        if len(self.pending) < RESUME_BYTES and not self._reading and not self.failed.done():
            self._read_on()


class EscposDriver(StreamDriver):
    name = "escpos"
    Profile = EscposProfile
    Connection = EscposConnection

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self.receipts = 0
        self.parse_failures = 0
        self.forwarded = 0
        self.listen_address: tuple[str, int] | None = None
        self.listening = asyncio.Event()
        self._ports: list[Any] = []
        self._capture_file: IO[bytes] | None = None
        self._captured = 0

    def claims(self) -> list[PortClaim]:
        # a tap sits between one POS and one printer: neither port can be shared
        conn = self.connection
        if conn.transport == "serial":
            return [PortClaim(str(p), "serial port") for p in (conn.pos_port, conn.printer_port)]
        return [PortClaim(str(conn.listen), "listening address")]

    def new_reader(self) -> ReceiptReader:
        """A fresh receipt reader (tests override this to inject failures)."""
        return ReceiptReader(self.profile)

    # lifecycle

    async def open(self) -> None:
        conn = self.connection
        if conn.capture_file is not None and self._capture_file is None:
            self._open_capture(conn.capture_file)
        if conn.transport == "serial" and not self._ports:
            for port in (conn.pos_port, conn.printer_port):
                try:
                    self._ports.append(self._open_port(port))
                except DriverError:
                    self._close_ports()
                    raise

    def _open_capture(self, path: Path) -> None:
        try:
            self._capture_file = open(path, "ab")  # noqa: SIM115 - kept open while streaming
        except OSError as exc:
            raise DriverError(f"capture_file {path}: {exc.strerror}") from None
        self._captured = self._capture_file.tell()

    def _open_port(self, port: str) -> Any:
        conn = self.connection
        try:
            handle = serial.Serial(
                port,
                baudrate=conn.baudrate,
                bytesize=conn.bytesize,
                parity=conn.parity,
                stopbits=conn.stopbits,
                rtscts=conn.rtscts,
                timeout=0,
                write_timeout=0,
                exclusive=True,  # no other program may open the port meanwhile
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(f"cannot open {port}: {exc}") from None
        os.set_blocking(handle.fileno(), False)
        return handle

    async def close(self) -> None:
        self._close_ports()
        if self._capture_file is not None:
            with contextlib.suppress(OSError):
                self._capture_file.close()
            self._capture_file = None

    def _close_ports(self) -> None:
        for handle in self._ports:
            with contextlib.suppress(Exception):
                handle.close()
        self._ports = []

    def write_capture(self, data: bytes) -> None:
        if self._capture_file is None:
            return
        room = self.connection.capture_max_bytes - self._captured
        if room <= 0:
            return
        try:
            self._capture_file.write(data[:room])
            self._capture_file.flush()
        except OSError as exc:
            log.warning("device %s: capture file: %s; capture stopped", self.device.id, exc)
            self._capture_file.close()
            self._capture_file = None
            return
        self._captured += min(room, len(data))
        if self._captured >= self.connection.capture_max_bytes:
            log.info("device %s: capture file full, capture stopped", self.device.id)

    async def stream(self, emit: Callable[[EventOut], None]) -> None:
        if self.connection.transport == "serial":
            await self._serial(emit)
        else:
            await self._tcp(emit)

    # serial

    async def _serial(self, emit: Callable[[EventOut], None]) -> None:
        if not self._ports:
            await self.open()
        pos, printer = (p.fileno() for p in self._ports)
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[str] = loop.create_future()
        capture = _Capture(self, emit)
        up = _Pipe(loop, pos, printer, name="POS → printer", failed=failed, on_data=capture.feed)
        down = _Pipe(loop, printer, pos, name="printer → POS", failed=failed)
        up.start()
        down.start()
        log.info(
            "device %s: passing %s → %s at %d baud",
            self.device.id,
            self.connection.pos_port,
            self.connection.printer_port,
            self.connection.baudrate,
        )
        try:
            reason = await failed
        finally:
            up.stop()
            down.stop()
            self.forwarded += up.bytes
            capture.end()
        raise DriverError(reason)

    # tcp

    async def _tcp(self, emit: Callable[[EventOut], None]) -> None:
        host, port = split_address(self.connection.listen)

        jobs: set[asyncio.Task[Any]] = set()

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                jobs.add(task)
            try:
                await self._job(reader, writer, emit)
            except Exception:
                log.exception("device %s: print job failed", self.device.id)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                if task is not None:
                    jobs.discard(task)

        try:
            server = await asyncio.start_server(client, host, port)
        except OSError as exc:
            raise DriverError(
                f"cannot listen on {self.connection.listen}: {exc.strerror}"
            ) from None
        self.listen_address = server.sockets[0].getsockname()[:2]
        self.listening.set()
        log.info(
            "device %s: print proxy on %s → %s",
            self.device.id,
            self.connection.listen,
            self.connection.printer,
        )
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.listening.clear()
            for task in list(jobs):
                task.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    async def _job(
        self,
        pos_reader: asyncio.StreamReader,
        pos_writer: asyncio.StreamWriter,
        emit: Callable[[EventOut], None],
    ) -> None:
        host, port = split_address(self.connection.printer)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancel
            async with asyncio.timeout(self.connection.connect_timeout):
                printer_reader, printer_writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "device %s: printer %s unreachable (%s); print job refused",
                self.device.id,
                self.connection.printer,
                exc.strerror if isinstance(exc, OSError) and exc.strerror else "timeout",
            )
            return
        capture = _Capture(self, emit)
        back = asyncio.create_task(self._copy_back(printer_reader, pos_writer))
        try:
            while data := await pos_reader.read(READ_SIZE):
                printer_writer.write(data)  # forward first ...
                self.forwarded += len(data)
                capture.feed(data)  # ... parse after (never raises)
                await printer_writer.drain()
            if printer_writer.can_write_eof():
                printer_writer.write_eof()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_AFTER_JOB):
                    await asyncio.shield(back)
        except (ConnectionError, OSError) as exc:
            log.warning("device %s: print job cut short: %s", self.device.id, exc)
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await back
            printer_writer.close()
            with contextlib.suppress(Exception):
                await printer_writer.wait_closed()
            capture.end()

    @staticmethod
    async def _copy_back(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Printer → POS (status answers) until the printer closes."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
