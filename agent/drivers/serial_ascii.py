"""``serial-ascii``: sensors that print a line of text per reading on a serial port.

The profile gives a regular expression with named groups and, per metric, which
group holds its number, a scale/offset and ``invalid`` raw values (an ultrasonic
sensor printing ``R1234\\r`` in mm, where ``R9999`` means "no target").

Each poll discards what is waiting in the port, optionally sends the profile's
``poll_command`` (sensors that answer only when asked), then reads lines until one
matches the pattern or the time is up. The first fragment after the discard is
dropped unless a command was sent (it may be the tail of an older line). Garbage
bytes, overlong or partial lines and non-matching text never crash the poll: they
become bad readings whose error shows what arrived.

pyserial is blocking: every port call runs in a worker thread, in short slices so
that closing the port never waits long.
"""

import asyncio
import math
import re
import termios
import threading
import time
from typing import Annotated, Any, Literal

import serial
from msgspec import Meta

from agent.drivers.base import (
    ConnectionBase,
    Driver,
    DriverError,
    PortClaim,
    ProfileBase,
    Sample,
)
from wire.structs import Section

READ_SLICE = 0.05  # seconds a blocking read may take before we look at the clock again


class Pattern(str):
    """A regular expression with named groups, matched against the whole (stripped) line."""

    @classmethod
    def parse(cls, value: Any) -> "Pattern":
        if not isinstance(value, str) or not value:
            raise ValueError("expected a regular expression, e.g. R(?P<range>\\d+)")
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if not compiled.groupindex:
            raise ValueError("the pattern needs named groups, e.g. R(?P<range>\\d+)")
        return cls(value)


class Terminator(str):
    @classmethod
    def parse(cls, value: Any) -> "Terminator":
        if not isinstance(value, str):
            raise ValueError('expected the line end as a string, e.g. "\\r"')
        if not value:
            raise ValueError("terminator can't be empty")
        return cls(value)


class Encoding(str):
    @classmethod
    def parse(cls, value: Any) -> "Encoding":
        if not isinstance(value, str):
            raise ValueError("expected an encoding name, e.g. ascii")
        try:
            "x".encode(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return cls(value)


class DevicePath(str):
    @classmethod
    def parse(cls, value: Any) -> "DevicePath":
        if not isinstance(value, str) or not value.startswith("/"):
            raise ValueError("the serial device path, e.g. /dev/ttyUSB0")
        return cls(value)


class LineMetric(Section):
    metric: Annotated[str, Meta(min_length=1, max_length=128)]
    group: Annotated[str, Meta(min_length=1)]  # named group of the pattern holding the number
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    invalid: list[float] | None = None  # raw numbers meaning "no reading"


class SerialAsciiProfile(ProfileBase):
    pattern: Pattern  # regex matched against the whole line (stripped)
    terminator: Terminator = Terminator("\r")  # line end, e.g. "\r", "\n" or "\r\n"
    encoding: Encoding = Encoding("ascii")
    poll_command: str | None = None  # sent before each read, e.g. "R\r"
    max_line: Annotated[int, Meta(ge=4, le=4096)] = 256  # bytes before a line counts as garbage
    max_lines: Annotated[int, Meta(ge=1, le=100)] = 5  # lines tried per poll for a match
    metrics: Annotated[list[LineMetric], Meta(min_length=1)]

    def __post_init__(self) -> None:
        groups = re.compile(self.pattern).groupindex
        problems = []
        seen: set[str] = set()
        for i, metric in enumerate(self.metrics):
            if metric.group not in groups:
                problems.append(
                    f"metrics[{i}].group: {metric.group!r} is not a named group of the pattern "
                    f"(groups: {', '.join(groups)})"
                )
            if metric.metric in seen:
                problems.append(f"metrics[{i}].metric: {metric.metric!r} is used twice")
            seen.add(metric.metric)
        if problems:
            raise ValueError("; ".join(problems))


class SerialAsciiConnection(ConnectionBase):
    port: DevicePath  # /dev/ttyUSB0
    baudrate: Annotated[int, Meta(gt=0)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class LineError(Exception):
    """What arrived (or didn't) instead of a usable line."""


def _show(data: bytes, limit: int = 40) -> str:
    """Bytes as a short printable repr for an error message."""
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


class LineReader:
    """Splits a byte stream into lines; pure, so tests can feed it any garbage."""

    def __init__(self, terminator: bytes, max_line: int) -> None:
        self.terminator = terminator
        self.max_line = max_line
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes | LineError]:
        """Complete lines (without terminator) or errors for overlong garbage."""
        self.buffer += data
        out: list[bytes | LineError] = []
        while True:
            end = self.buffer.find(self.terminator)
            if end < 0:
                if len(self.buffer) > self.max_line:
                    out.append(
                        LineError(
                            f"no line end within {self.max_line} bytes: {_show(bytes(self.buffer))}"
                        )
                    )
                    self.buffer.clear()
                return out
            line = bytes(self.buffer[:end])
            del self.buffer[: end + len(self.terminator)]
            if len(line) > self.max_line:
                out.append(LineError(f"line longer than {self.max_line} bytes: {_show(line)}"))
            else:
                out.append(line)


class SerialAsciiDriver(Driver):
    name = "serial-ascii"
    Profile = SerialAsciiProfile
    Connection = SerialAsciiConnection

    def __init__(self, device: Any, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self.profile: SerialAsciiProfile
        self.connection: SerialAsciiConnection
        self.pattern = re.compile(profile.pattern)
        self._port: Any = None
        self._io = threading.Lock()  # held by the worker thread while it uses the port
        self._closing = threading.Event()

    def metrics(self) -> list[tuple[str, str | None]]:
        return [(m.metric, m.unit) for m in self.profile.metrics]

    def claims(self) -> list[PortClaim]:
        # a line-printing sensor has no address: two of them can't share a port
        return [PortClaim(str(self.connection.port), "serial port")]

    async def open(self) -> None:
        self._closing.clear()
        self._port = await asyncio.to_thread(self._open_blocking)

    def _open_blocking(self) -> Any:
        conn = self.connection
        try:
            return serial.Serial(
                conn.port,
                baudrate=conn.baudrate,
                parity=conn.parity,
                stopbits=conn.stopbits,
                bytesize=conn.bytesize,
                timeout=READ_SLICE,
                write_timeout=1.0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(f"cannot open {conn.port}: {exc}") from None

    async def close(self) -> None:
        self._closing.set()
        port, self._port = self._port, None
        if port is not None:
            await asyncio.to_thread(self._close_blocking, port)

    def _close_blocking(self, port: Any) -> None:
        with self._io:  # the reader leaves within READ_SLICE once _closing is set
            try:
                port.close()
            except Exception:
                pass

    async def read(self, at: float) -> list[Sample]:
        if self._port is None:
            raise DriverError("port not open")
        # stop before the poller's timeout (which also covers open) to report a clearer error
        budget = max(self.device.timeout * 0.75, 0.01)
        line = await asyncio.to_thread(self._read_blocking, self._port, budget)
        if isinstance(line, LineError):
            return self._bad(str(line))
        return self._parse(line)

    def _read_blocking(self, port: Any, budget: float) -> bytes | LineError:
        """The first line matching the pattern, or why there is none. Never raises on data."""
        deadline = time.monotonic() + budget
        profile = self.profile
        terminator = profile.terminator.encode(profile.encoding)
        reader = LineReader(terminator, profile.max_line)
        with self._io:
            try:
                port.reset_input_buffer()
                synced = profile.poll_command is not None
                if profile.poll_command is not None:
                    port.write(profile.poll_command.encode(profile.encoding))
                    port.flush()
                tried = 0
                last: bytes | LineError | None = None
                got = 0
                while time.monotonic() < deadline and not self._closing.is_set():
                    data = port.read(max(1, port.in_waiting))
                    got += len(data)
                    for item in reader.feed(data):
                        if not synced:  # the first fragment may be an old line's tail
                            synced = True
                            continue
                        tried += 1
                        last = item
                        if isinstance(item, bytes) and self._matches(item):
                            return item
                        if tried >= profile.max_lines:
                            return self._no_match(last)
            except (serial.SerialException, OSError, termios.error) as exc:
                # termios.error (a pty or USB adapter gone) is not an OSError
                raise DriverError(f"{self.connection.port}: {_port_error(exc)}") from None
        if last is not None:
            return self._no_match(last)
        if got == 0:
            return LineError(f"no data within {budget:g}s")
        return LineError(
            f"no complete line within {budget:g}s (got {got} bytes: {_show(bytes(reader.buffer))})"
        )

    def _text(self, line: bytes) -> str:
        return line.decode(self.profile.encoding, errors="replace").strip()

    def _matches(self, line: bytes) -> bool:
        return self.pattern.fullmatch(self._text(line)) is not None

    def _no_match(self, last: bytes | LineError) -> LineError:
        if isinstance(last, LineError):
            return last
        return LineError(f"line does not match the pattern: {_show(last)}")

    def _bad(self, error: str) -> list[Sample]:
        return [
            Sample(m.metric, None, m.unit, quality="bad", error=error) for m in self.profile.metrics
        ]

    def _parse(self, line: bytes) -> list[Sample]:
        match = self.pattern.fullmatch(self._text(line))
        if match is None:  # _read_blocking only returns matching lines; stay safe
            return self._bad(f"line does not match the pattern: {_show(line)}")
        samples = []
        for m in self.profile.metrics:
            text = match.group(m.group)
            raw = _number(text)
            if raw is None:
                error = f"{m.group}: not a number: {text!r} in line {_show(line)}"
                samples.append(Sample(m.metric, None, m.unit, quality="bad", error=error))
                continue
            if any(raw == sentinel for sentinel in m.invalid or ()):
                error = f"{m.metric}: device sent the 'no reading' value {text} ({_show(line)})"
                samples.append(Sample(m.metric, None, m.unit, quality="bad", error=error))
                continue
            value: int | float = raw
            if m.scale != 1 or m.offset != 0:
                value = raw * m.scale + m.offset  # float64, not rounded
            samples.append(Sample(m.metric, value, m.unit))
        return samples


def _port_error(exc: Exception) -> str:
    """``(5, 'Input/output error')`` → ``Input/output error (errno 5)``."""
    args = exc.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return f"{args[1]} (errno {args[0]})"
    return str(exc) or type(exc).__name__


def _number(text: str | None) -> int | float | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


__all__ = ["LineReader", "SerialAsciiConnection", "SerialAsciiDriver", "SerialAsciiProfile"]
