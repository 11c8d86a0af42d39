"""``modbus``: Modbus TCP and Modbus RTU (serial) devices read with pymodbus.

The profile lists points (metric, register, function, type, byte/word order,
scale, offset, unit, invalid sentinels, optional counter); the device entry gives
the connection (``transport: tcp`` with host/port, or ``transport: rtu`` with a
serial port and its line settings) and the unit id. Adjacent points are read
together, at most 125 registers or 2000 bits per request.

A request the device refuses with a Modbus exception makes bad readings for the
points of that request only; a timeout or a lost connection fails the whole poll
(the poller then retries and reports every metric bad).
"""

import contextlib
import math
import struct
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from agent.counters import (
    CounterSpec,
    WrappingCounter,
    point_all_metric_names,
    point_metric_names,
)
from agent.drivers._modbus_bus import ModbusBus, silent_interval
from agent.drivers._modbus_decode import (
    FORMATS,
    INTEGER_BITS,
    DecodeError,
    Order,
    RegisterType,
    check_order,
    decode,
    decode_string,
    exception_text,
    register_count,
    scaled,
)
from agent.drivers._modbus_plan import (
    BIT_FUNCTIONS,
    MAX_REGISTERS,
    Function,
    PointSpan,
    ReadRequest,
    plan_reads,
)
from agent.drivers.base import (
    ConnectionBase,
    Driver,
    DriverError,
    PortClaim,
    ProfileBase,
    Sample,
)
from wire import ValueType
from wire.structs import Section

PointType = Literal[RegisterType, "bool"]  # registers' types, or a coil/discrete bit
INTEGER_TYPES = tuple(INTEGER_BITS)
UNSIGNED_BITS = {"uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
Encoding = Literal["ascii", "latin-1", "utf-8"]


class ModbusPoint(Section):
    metric: Annotated[str, Meta(min_length=1, max_length=128)]
    # the profile key is ``register``; the attribute is ``address``
    address: Annotated[int, Meta(ge=0, le=65535)] = msgspec.field(name="register")  # zero-based
    function: Function = "holding"
    type: PointType | None = None  # default: uint16 for registers, bool for coil/discrete
    word_order_: Order | None = msgspec.field(default=None, name="word_order")  # default big
    byte_order_: Order | None = msgspec.field(default=None, name="byte_order")  # default big
    order: Annotated[str, Meta(pattern="^[A-H]{2,16}$")] | None = None  # bytes as sent: CDAB
    byte: Literal["high", "low"] | None = None  # int8/uint8: which half of the register
    bit: Annotated[int, Meta(ge=0, le=63)] | None = None  # one bit of the value: a bool
    mask: Annotated[int, Meta(ge=1)] | None = None  # (value & mask) >> shift
    shift: Annotated[int, Meta(ge=0, le=63)] = 0
    count: Annotated[int, Meta(ge=1, le=MAX_REGISTERS)] | None = None  # string: registers
    encoding: Encoding = "ascii"  # string
    trim: bool = True  # string: drop NULs and blanks at both ends
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    invalid: list[float] | None = None  # raw values meaning "no reading"
    counter: CounterSpec | None = None

    def __post_init__(self) -> None:
        bits = self.function in BIT_FUNCTIONS
        if self.type is None:
            self.type = "bool" if bits else "uint16"
        kind = self.type
        if bits and kind != "bool":
            raise ValueError(f"type: a {self.function} is one bit: type must be bool, not {kind}")
        if not bits and kind == "bool":
            raise ValueError(
                f"type: bool is for coil or discrete; for one bit of a register "
                f"use bit: 0..15 (function {self.function})"
            )
        self._check_keys(kind)
        size = self.size
        if self.address + size > 65536:
            raise ValueError(
                f"type: {kind} at register {self.address} needs {size} registers, "
                "past address 65535"
            )
        if self.order is not None:
            if self.word_order_ is not None or self.byte_order_ is not None:
                raise ValueError("order: give either order or word_order/byte_order, not both")
            check_order(self.order, size)
        if (bits or self.bit is not None or kind == "string") and (
            self.scale != 1 or self.offset != 0
        ):
            what = "a bit" if kind != "string" else "a string"
            raise ValueError(f"scale and offset don't apply to {what}")
        if not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale and offset must be finite numbers")
        if self.counter is not None:
            if kind not in UNSIGNED_BITS or self.bit is not None:
                raise ValueError(f"counter needs an unsigned integer type, not {kind}")
            if self.scale != 1 or self.offset != 0:
                raise ValueError("a counter uses counter.per_count, not scale/offset")
            full = 1 << UNSIGNED_BITS[kind]
            if self.counter.wrap is not None and self.counter.wrap > full:
                raise ValueError(f"counter.wrap {self.counter.wrap} exceeds the {kind} range")

    def _check_keys(self, kind: str) -> None:
        """Keys that belong to some types only."""
        if kind in ("int8", "uint8") and self.byte is None:
            raise ValueError(
                f"byte: {kind} needs byte: high or byte: low (which half of the register)"
            )
        if kind not in ("int8", "uint8") and self.byte is not None:
            raise ValueError(f"byte: only for int8/uint8, not {kind}")

        if kind == "string" and self.count is None:
            raise ValueError("count: a string needs count: <registers> (two characters each)")
        if kind != "string":
            if self.count is not None:
                raise ValueError(f"count: only for type string, not {kind}")
            if self.encoding != "ascii" or not self.trim:
                raise ValueError(f"encoding and trim: only for type string, not {kind}")
        integer = INTEGER_BITS.get(kind)
        if self.bit is not None:
            if integer is None:
                raise ValueError(f"bit: only on an integer register type, not {kind}")
            if self.bit >= integer:
                raise ValueError(f"bit: {kind} has bits 0..{integer - 1}, not {self.bit}")
            if self.mask is not None or self.shift:
                raise ValueError("bit: give either bit or mask/shift, not both")
        if self.mask is not None or self.shift:
            if integer is None:
                raise ValueError(f"mask and shift: only on an integer type, not {kind}")
            if self.mask is not None and self.mask >= 1 << integer:
                raise ValueError(f"mask: 0x{self.mask:X} is wider than {kind}")
            if self.shift >= integer:
                raise ValueError(f"shift: {kind} has bits 0..{integer - 1}, not {self.shift}")
        if self.invalid is not None and (kind in ("string", "bool") or self.bit is not None):
            raise ValueError(f"invalid: sentinels are numbers; not for {kind} or bit points")

    @property
    def word_order(self) -> Order:
        return self.word_order_ or "big"

    @property
    def byte_order(self) -> Order:
        return self.byte_order_ or "big"

    @property
    def size(self) -> int:
        return 1 if self.type == "bool" else register_count(self.type or "uint16", self.count)

    def span(self, index: int) -> PointSpan:
        return PointSpan(index, self.function, self.address, self.size)

    def metric_names(self) -> list[tuple[str, str | None]]:
        return point_metric_names(self.metric, self.unit, self.counter)

    def all_metric_names(self) -> list[str]:
        return point_all_metric_names(self.metric, self.counter)


class ModbusProfile(ProfileBase):
    points: Annotated[list[ModbusPoint], Meta(min_length=1)]
    max_gap: Annotated[int, Meta(ge=0, le=100)] = 0  # unused addresses a read may bridge
    max_registers: Annotated[int, Meta(ge=1, le=MAX_REGISTERS)] = MAX_REGISTERS  # per request

    def __post_init__(self) -> None:
        points = self.points
        problems = []
        seen: dict[str, int] = {}
        for i, point in enumerate(points):
            for name in point.all_metric_names():
                if name in seen:
                    problems.append(
                        f"points[{i}]: metric {name!r} already used by points[{seen[name]}]"
                    )
                seen.setdefault(name, i)
        if problems:
            raise ValueError("points: " + "; ".join(problems))


SERIAL_KEYS = ("baudrate", "parity", "stopbits", "bytesize")


class ModbusConnection(ConnectionBase):
    transport: Literal["tcp", "rtu"]
    host: str | None = None  # tcp only
    # tcp: port number (default 502); rtu: serial device path
    port: int | str | None = None
    unit: Annotated[int, Meta(ge=0, le=255)] = 1  # unit / slave id
    # rtu only, as are the following; None = not given (a tcp connection refuses them)
    baudrate_: Annotated[int, Meta(gt=0)] | None = msgspec.field(default=None, name="baudrate")
    parity_: Literal["N", "E", "O"] | None = msgspec.field(default=None, name="parity")
    stopbits_: Literal[1, 2] | None = msgspec.field(default=None, name="stopbits")
    bytesize_: Literal[7, 8] | None = msgspec.field(default=None, name="bytesize")

    def __post_init__(self) -> None:
        if self.transport == "rtu" and self.host is not None:
            raise ValueError("host is for transport tcp; rtu uses port: /dev/ttyUSB0")
        self.port = self._checked_port(self.port)
        if self.transport == "tcp":
            if not self.host:
                raise ValueError("transport tcp needs host")
            given = [key for key in SERIAL_KEYS if getattr(self, f"{key}_") is not None]
            if given:
                raise ValueError(f"{', '.join(sorted(given))}: only for transport rtu")
        elif self.unit == 0 or self.unit > 247:
            raise ValueError("unit: an RTU unit id is between 1 and 247")

    def _checked_port(self, value: int | str | None) -> int | str | None:
        if self.transport == "tcp":
            if value is None:
                return 502
            if isinstance(value, str):
                if not value.isdigit():
                    raise ValueError("port: a TCP port is a number (502)")
                value = int(value)
            if not 1 <= value <= 65535:
                raise ValueError("port: a TCP port is between 1 and 65535")
        elif not isinstance(value, str) or not value.startswith("/"):
            raise ValueError("port: rtu needs the serial device path, e.g. port: /dev/ttyUSB0")
        return value

    @property
    def baudrate(self) -> int:
        return 9600 if self.baudrate_ is None else self.baudrate_

    @property
    def parity(self) -> Literal["N", "E", "O"]:
        return self.parity_ or "N"

    @property
    def stopbits(self) -> Literal[1, 2]:
        return self.stopbits_ or 1

    @property
    def bytesize(self) -> Literal[7, 8]:
        return self.bytesize_ or 8

    def describe(self) -> str:
        if self.transport == "tcp":
            return f"{self.host}:{self.port} unit {self.unit}"
        return f"{self.port} unit {self.unit}"


Value = int | float | bool | str


class ModbusDriver(Driver):
    name = "modbus"
    Profile = ModbusProfile
    Connection = ModbusConnection

    def __init__(self, device: Any, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self.profile: ModbusProfile
        self.connection: ModbusConnection
        self.requests: list[ReadRequest] = plan_reads(
            [p.span(i) for i, p in enumerate(profile.points)],
            max_gap=profile.max_gap,
            max_count=profile.max_registers,
        )
        self._client: Any = None
        self._bus = self._new_bus()  # its own until link() hands it a shared one
        self._counters: dict[int, WrappingCounter] = {}
        for i, point in enumerate(profile.points):
            if point.counter is not None:
                bits = UNSIGNED_BITS[point.type or "uint16"]
                self._counters[i] = point.counter.counter(wrap=1 << bits)

    def metrics(self) -> list[tuple[str, str | None]]:
        return [name for point in self.profile.points for name in point.metric_names()]

    def reported_metrics(self) -> set[str]:
        moved = {p.counter.moved_metric for p in self.profile.points if p.counter}
        return super().reported_metrics() | {m for m in moved if m}

    def value_types(self) -> dict[str, ValueType]:
        types = super().value_types()
        for p in self.profile.points:
            if p.type == "bool" or p.bit is not None:
                types[p.metric] = "bool"
            elif p.type == "string":
                types[p.metric] = "string"
        return types

    def claims(self) -> list[PortClaim]:
        conn = self.connection
        if conn.transport == "tcp":
            return [PortClaim(f"{conn.host}:{conn.port}", "Modbus TCP gateway", "modbus-tcp")]
        settings = tuple((key, getattr(conn, key)) for key in SERIAL_KEYS)
        return [PortClaim(str(conn.port), "serial port", "modbus-rtu", settings)]

    @classmethod
    def link(cls, drivers: Sequence[Driver]) -> None:
        """Every device on one line or TCP gateway gets the same bus."""
        modbus = [d for d in drivers if isinstance(d, ModbusDriver)]
        if modbus:
            bus = modbus[0]._bus
            for driver in modbus[1:]:
                driver._bus = bus

    def _new_bus(self) -> ModbusBus:
        conn = self.connection
        timeout = max(self.device.timeout, 0.01)
        # retries and reconnects are the poller's job: pymodbus tries once
        if conn.transport == "tcp":
            return ModbusBus(
                f"{conn.host}:{conn.port}",
                lambda: AsyncModbusTcpClient(
                    str(conn.host),
                    port=int(conn.port or 502),
                    timeout=timeout,
                    retries=0,
                    reconnect_delay=0,
                ),
            )
        return ModbusBus(
            str(conn.port),
            lambda: AsyncModbusSerialClient(
                str(conn.port),
                baudrate=conn.baudrate,
                bytesize=conn.bytesize,
                parity=conn.parity,
                stopbits=conn.stopbits,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
            ),
            silent=silent_interval(conn.baudrate),
        )

    def turn(self) -> AbstractAsyncContextManager[None]:
        return self._bus.turn()

    async def open(self) -> None:
        conn = self.connection
        try:
            client = await self._bus.attach(id(self))
        except Exception as exc:  # pymodbus and pyserial raise many kinds
            text = f": {exc}" if str(exc) != "connect failed" else ""
            raise DriverError(f"cannot connect to {conn.describe()}{text}") from None
        # the poller decides when a silent unit means a dead line, not pymodbus
        with contextlib.suppress(AttributeError):
            client.set_max_no_responses(1 << 30)
        self._client = client

    async def close(self) -> None:
        self._client = None
        self._bus.detach(id(self))

    async def read(self, at: float) -> list[Sample]:
        if self._client is None:
            raise DriverError("not connected")
        raw: dict[int, Value] = {}
        errors: dict[int, str] = {}
        for request in self.requests:
            values, error = await self._request(request)
            for span in request.points:
                if error is not None:
                    errors[span.index] = error
                    continue
                try:
                    raw[span.index] = self._decode_point(span, request, values)
                except DecodeError as exc:
                    errors[span.index] = f"{request.describe()}: {exc}"
        samples: list[Sample] = []
        for i, point in enumerate(self.profile.points):
            samples.extend(self._samples(i, point, raw.get(i), errors.get(i), at))
        return samples

    async def _request(self, request: ReadRequest) -> tuple[list[Any], str | None]:
        client = self._client
        unit = self.connection.unit
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[request.function]
        bus = self._bus
        if bus.client is not client:  # another unit found the line broken and dropped it
            self._client = None
            raise DriverError(f"{bus.name}: connection lost")
        with contextlib.suppress(AttributeError):  # this unit's own timeout, not the first's
            client.ctx.comm_params.timeout_connect = max(self.device.timeout * 0.9, 0.01)
        await bus.quiet()
        answered = False
        try:
            response = await call(request.address, count=request.count, device_id=unit)
            answered = True
        except ConnectionException as exc:
            bus.drop()
            self._client = None
            raise DriverError(f"{request.describe()}: {_pymodbus_text(exc)}") from None
        except ModbusException as exc:
            text = _pymodbus_text(exc)
            if text.startswith("no answer"):  # the usual one: say who and how long
                text = f"no answer from unit {unit} within {self.device.timeout:g}s"
            raise DriverError(f"{request.describe()}: {text}") from None
        finally:
            bus.sent(answered)
        if response.isError():
            code = getattr(response, "exception_code", None)
            if isinstance(code, int):
                return [], f"{exception_text(code)} reading {request.describe()}"
            return [], f"error response reading {request.describe()}: {response}"
        bits = request.function in BIT_FUNCTIONS
        values = list(response.bits if bits else response.registers)
        if len(values) < request.count:
            return [], (
                f"short answer to {request.describe()}: {len(values)} of {request.count} values"
            )
        return values[: request.count], None

    def _decode_point(self, span: PointSpan, request: ReadRequest, values: list[Any]) -> Value:
        """The point's raw value, from the request's answer: the same registers may
        serve several points (a register read raw and scaled, bits of a status word)."""
        point = self.profile.points[span.index]
        start = span.address - request.address
        chunk = values[start : start + span.size]
        if point.type == "bool":
            return bool(chunk[0])
        if point.type == "string":
            return decode_string(
                chunk,
                point.word_order,
                point.byte_order,
                order=point.order,
                encoding=point.encoding,
                trim=point.trim,
            )
        return decode(
            chunk,
            point.type or "uint16",
            point.word_order,
            point.byte_order,
            order=point.order,
            byte=point.byte,
        )

    def _samples(
        self, index: int, point: ModbusPoint, raw: Value | str | None, error: str | None, at: float
    ) -> list[Sample]:
        names = point.metric_names()
        counter = self._counters.get(index)
        if error is None and raw is not None and not isinstance(raw, str):
            error = _invalid(point, raw)
            if error is None and counter is not None and not 0 <= int(raw) < counter.wrap:
                error = f"{point.metric}: count {raw} outside 0..{counter.wrap - 1}"
        if error is not None or raw is None:
            why = error or "no value"
            return [Sample(m, None, u, quality="bad", error=why) for m, u in names]
        if isinstance(raw, str | bool):
            return [Sample(point.metric, raw, point.unit)]
        if point.bit is not None:
            return [Sample(point.metric, bool(int(raw) >> point.bit & 1), point.unit)]
        if point.mask is not None or point.shift:
            raw = (int(raw) & (point.mask if point.mask is not None else -1)) >> point.shift
        value = scaled(raw, point.scale, point.offset)
        samples = [Sample(point.metric, value, point.unit)]
        spec = point.counter
        if counter is not None and spec is not None:
            samples += spec.samples(counter.update(int(raw), at))
        return samples


def _invalid(point: ModbusPoint, raw: Value) -> str | None:
    """An error when ``raw`` is a sentinel or not a number, else None."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return f"{point.metric}: device sent {raw} (not a number)"
    for sentinel in point.invalid or ():
        if raw == sentinel or _same_float(point.type, raw, sentinel):
            if isinstance(raw, float):
                shown = f"{raw:g}"
            elif point.type in UNSIGNED_BITS:
                shown = f"{raw} (0x{int(raw):X})"
            else:
                shown = str(raw)
            return f"{point.metric}: device sent the 'no reading' value {shown}"
    return None


def _same_float(type_: str | None, raw: Value, sentinel: float) -> bool:
    """-9999.9 in a profile equals the float32 (or float16) the device sends for it."""
    fmt = {"float32": ">f", "float16": ">e"}.get(type_ or "")
    if fmt is None:
        return False
    try:
        return struct.pack(fmt, raw) == struct.pack(fmt, sentinel)
    except (OverflowError, struct.error):
        return False


def _pymodbus_text(exc: Exception) -> str:
    text = str(exc).replace("Modbus Error: ", "").strip()
    if "No response" in text or "timeout" in text.lower():
        return f"no answer ({text})"
    return text or type(exc).__name__


__all__ = ["FORMATS", "ModbusConnection", "ModbusDriver", "ModbusPoint", "ModbusProfile"]
