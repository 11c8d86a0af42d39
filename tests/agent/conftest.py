"""Real device peers for agent tests: pymodbus's own server (TCP, or RTU over a pty
pair), pseudo-terminals for serial byte streams, a TCP server that never answers.

Each peer runs in its own thread (with its own event loop for pymodbus), so the
code under test can use ``asyncio.run`` freely; fixtures stop and join them.

Register images are plain data, as golden cases write them::

    {"holding": {0: [0x4348, 0x0000]}, "input": {10: 7}, "coil": {0: [True, False]}}

Addresses not given are absent: the server answers them with Modbus exception 2.
"""

import asyncio
import os
import select
import socket
import threading
import tty
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.ptys import PtyBridge
from scripts.services import free_port

FUNCTIONS = ("coil", "discrete", "holding", "input")
WRITE_CODES = {"coil": 5, "discrete": 2, "holding": 6, "input": 4}  # datastore block keys
Image = Mapping[str, Mapping[int, Any]]


def _runs(values: Mapping[int, Any]) -> list[tuple[int, list[Any]]]:
    """{address: value or list} → contiguous (start, values) runs."""
    cells: dict[int, Any] = {}
    for start, value in values.items():
        for offset, item in enumerate(value if isinstance(value, list) else [value]):
            cells[int(start) + offset] = item
    runs: list[tuple[int, list[Any]]] = []
    for address in sorted(cells):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(cells[address])
        else:
            runs.append((address, [cells[address]]))
    return runs


def sim_device(unit: int, image: Image) -> Any:
    """A pymodbus SimDevice serving ``image`` (coils/discretes addressed by bit)."""
    from pymodbus.simulator import DataType, SimData, SimDevice

    unknown = set(image) - set(FUNCTIONS)
    if unknown:
        raise ValueError(f"unknown register kinds {unknown}; use {FUNCTIONS}")
    blocks = []
    for function in FUNCTIONS:
        bits = function in ("coil", "discrete")
        kind = DataType.BITS if bits else DataType.REGISTERS
        block = [
            SimData(
                start,
                values=[bool(v) for v in vals] if bits else [int(v) for v in vals],
                datatype=kind,
            )
            for start, vals in _runs(image.get(function, {}))
        ]
        if not block:  # pymodbus needs every block; park one value far away
            block = [SimData(60000, values=[False] if bits else [0], datatype=kind)]
        blocks.append(block)
    return SimDevice(id=unit, simdata=tuple(blocks))


class _KnownUnits:
    """pymodbus's SimCore, but a request for a unit it doesn't serve raises
    NoSuchIdException (SimCore falls back to unit 0), so that the server, told to
    ignore missing devices, stays silent as an absent unit on a real line does."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    async def async_getValues(self, device_id: int, *args: Any) -> Any:
        from pymodbus.exceptions import NoSuchIdException

        if device_id not in self._core.devices:
            raise NoSuchIdException(f"no unit {device_id}")
        return await self._core.async_getValues(device_id, *args)


class ModbusServer:
    """pymodbus's server in a thread: ``transport`` tcp (``.port``) or rtu (``serial_port``)."""

    def __init__(
        self,
        units: Mapping[int, Image],
        transport: str = "tcp",
        serial_port: str | None = None,
    ) -> None:
        self.units = units
        self.transport = transport
        self.serial_port = serial_port
        self.port = free_port() if transport == "tcp" else 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> "ModbusServer":
        self._thread = threading.Thread(target=self._run, name="modbus-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("modbus server did not start")
        if self._error is not None:
            raise RuntimeError(f"modbus server failed: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        devices = [sim_device(unit, image) for unit, image in self.units.items()]
        if self.transport == "tcp":
            self._server = ModbusTcpServer(
                devices,
                address=("127.0.0.1", self.port),
            )
        else:  # on an RS-485 line a unit that isn't there says nothing
            self._server = ModbusSerialServer(
                devices,
                port=str(self.serial_port),
                baudrate=19200,
                ignore_missing_devices=True,
            )
            self._server.context = _KnownUnits(self._server.context)
        await self._server.serve_forever(background=True)
        self._stopped = asyncio.Event()
        self._ready.set()
        await self._stopped.wait()
        await self._server.shutdown()

    def set(self, unit: int, function: str, address: int, values: Any) -> None:
        """Change what the device serves (e.g. the next counter value)."""
        assert self._loop is not None
        vals = values if isinstance(values, list) else [values]
        code = WRITE_CODES[function]

        async def _write() -> None:
            result = await self._server.context.async_setValues(unit, code, address, vals)
            if result is not None:
                raise RuntimeError(f"cannot set {function} {address}: {result!r}")

        asyncio.run_coroutine_threadsafe(_write(), self._loop).result(5)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)


class PtyPort:
    """One pseudo-terminal: the driver opens ``path``; the test writes/reads ``fd``."""

    def __init__(self) -> None:
        self.fd, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_available(self, timeout: float = 0.0) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 4096) if ready else b""

    def close(self) -> None:
        for fd in (self.fd, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class SilentTcpServer:
    """Accepts connections and reads requests but never answers: a hung device."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop_r, self._stop_w = os.pipe()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="silent-tcp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock, self._stop_r, *self._conns], [], [])
            if self._stop_r in ready:
                return
            for item in ready:
                if item is self.sock:
                    conn, _ = self.sock.accept()
                    self._conns.append(conn)
                elif isinstance(item, socket.socket) and not item.recv(4096):
                    self._conns.remove(item)
                    item.close()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for conn in self._conns:
            conn.close()
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


@pytest.fixture
def modbus_server() -> Iterator[Any]:
    """Factory: ``modbus_server({1: image}, transport="tcp"|"rtu", serial_port=...)``."""
    started: list[ModbusServer] = []

    def _make(units: Mapping[int, Image], **kwargs: Any) -> ModbusServer:
        server = ModbusServer(units, **kwargs)
        started.append(server)
        return server.start()

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def pty_bridge() -> Iterator[PtyBridge]:
    bridge = PtyBridge()
    yield bridge
    bridge.close()


@pytest.fixture
def pty_port() -> Iterator[PtyPort]:
    port = PtyPort()
    yield port
    port.close()


@pytest.fixture
def silent_tcp() -> Iterator[SilentTcpServer]:
    server = SilentTcpServer()
    yield server
    server.close()


# golden cases (tests/agent/golden/<case>/case.yaml), shared by the Modbus and serial tests

GOLDEN = Path(__file__).parent / "golden"


def golden_cases(transport: str) -> list[Any]:
    """pytest params (case dir, transport) for every golden case using ``transport``."""
    params = []
    for case_dir in sorted(p for p in GOLDEN.iterdir() if (p / "case.yaml").is_file()):
        case = yaml.safe_load((case_dir / "case.yaml").read_text(encoding="utf-8"))
        for used in case.get("transports", ["tcp"]):
            if used == transport or (transport == "modbus" and used in ("tcp", "rtu")):
                params.append(pytest.param(case_dir, used, id=f"{case_dir.name}-{used}"))
    return params


def load_case(case_dir: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((case_dir / "case.yaml").read_text(encoding="utf-8"))
    return case


def case_profile(case_dir: Path, case: Mapping[str, Any]) -> tuple[Path, str]:
    """(profiles dir, profile name) for the case: a shipped profile or its profile.yaml."""
    from agent.profiles import default_profiles_dir

    if "profile" in case:
        return default_profiles_dir(), str(case["profile"])
    return case_dir, "profile"


def check_readings(where: str, got: list[Any], expected: list[Mapping[str, Any]]) -> None:
    """Samples must match the expected readings exactly, in order (floats to 1e-6)."""
    got_rows = [(s.metric, s.value, s.unit, s.quality, s.error) for s in got]
    assert [s.metric for s in got] == [e["metric"] for e in expected], f"{where}: {got_rows}"
    for sample, want in zip(got, expected, strict=True):
        label = f"{where}: {sample.metric}: {sample}"
        assert sample.quality == want.get("quality", "good"), label
        value = want.get("value")
        if isinstance(value, float):
            assert isinstance(sample.value, float | int) and not isinstance(sample.value, bool)
            assert sample.value == pytest.approx(value, rel=1e-6, abs=1e-9), label
        else:
            assert sample.value == value, label
            assert type(sample.value) is type(value), label
        if "unit" in want:
            assert sample.unit == want["unit"], label
        if want.get("error"):
            assert sample.error is not None and want["error"] in sample.error, label
        elif sample.quality == "good":
            assert sample.error is None, label


def check_events(where: str, got: list[Any], expected: list[Mapping[str, Any]]) -> None:
    """Events raised by one poll: kinds in order, and the data given (floats to 1e-6)."""
    assert [e.kind for e in got] == [e["kind"] for e in expected], f"{where}: {got}"
    for event, want in zip(got, expected, strict=True):
        for key, value in (want.get("data") or {}).items():
            if isinstance(value, float):
                assert event.data.get(key) == pytest.approx(value, rel=1e-6), f"{where}: {event}"
            else:
                assert event.data.get(key) == value, f"{where}: {event}"


def run_golden_polls(
    device: Any,
    case_dir: Path,
    case: Mapping[str, Any],
    *,
    before: Callable[[Mapping[str, Any]], None] = lambda poll: None,
    samples_of: Callable[[list[Any]], list[Any]] = lambda samples: samples,
    deliver: Callable[[str, int, list[Any]], None] = lambda device, ts, samples: None,
) -> None:
    """Poll ``device`` once per entry of the case's ``polls`` through the real Poller:
    ``before`` sets up what the device answers to that poll, ``samples_of`` picks the
    samples to check; each poll's readings and events must be the expected ones."""
    from agent.clock import SystemClock
    from agent.poller import Poller

    raised: list[Any] = []

    async def run() -> None:
        poller = Poller(device.driver, deliver, SystemClock(), events=lambda d, e: raised.append(e))
        try:
            for index, poll in enumerate(case["polls"]):
                before(poll)
                samples = samples_of(await poller.poll(float(poll["at"])))
                check_readings(f"{case_dir.name} poll {index}", samples, poll["expect"])
                check_events(f"{case_dir.name} poll {index}", raised, poll.get("events") or [])
                raised.clear()
        finally:
            await poller._close()

    asyncio.run(run())
