"""The demo's field devices, simulated on this machine with real protocols:

- a **river level sensor**: pymodbus's own Modbus TCP server serving the register map
  of ``firmware-profiles/river/radar-level-mm.yaml`` (holding 0: level in mm, 1: air
  gap in mm, 2: status). From the moment a gateway first connects, the water rises
  through the Siaga bands, stays at the crest, falls back and starts again
  (:class:`River`); unit 2 on the same port is a tipping-bucket rain gauge
  (``river/rain-tipping-bucket``) counting the downpour;
- a **tapping box's POS**: two pseudo-terminals stand for the POS and printer serial
  ports; the POS side replays the golden ESC/POS captures of
  ``tests/agent/golden_escpos`` at about 9600 baud, the printer side swallows what the
  tapping box passes through;
- a **city application** ("lapor-kota") on a local HTTP port that the demo stops and
  starts again, for the network checks (``network/http`` and ``network/tcp-port``).

    python -m scripts.demo_devices --state devices.json [--speed 1]

Once everything listens it writes ``--state`` (the Modbus port, the two serial port
paths, the application's port) and prints one line per change. ``--speed 6`` runs
the whole timeline six times faster (the end-to-end test uses it).
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.services import free_port

GOLDEN_ESCPOS = Path(__file__).resolve().parent.parent / "tests" / "agent" / "golden_escpos"
RECEIPT_FILES = ("restaurant.bin", "parking.bin", "hotel.bin", "mixed.bin")
SERIAL_BYTES_PER_S = 960  # 9600 baud, 8N1
HOLDING = 6  # pymodbus's datastore key for holding registers
LEVEL_UNIT, RAIN_UNIT = 1, 2  # Modbus unit ids of the level sensor and the rain gauge


@dataclass(frozen=True)
class River:
    """The water level over time, in cm: ``low`` for ``calm`` seconds, rising at ``rate``
    cm/s to ``crest``, held ``crest_hold`` seconds, falling at ``rate`` back to ``low``;
    then again. With the demo's bands (waspada 250, siaga 300, awas 350) and the defaults
    it reaches waspada 20 s after the start, siaga at 40 s, awas at 60 s and its crest
    (370 cm) at 68 s."""

    low: float = 200.0
    crest: float = 370.0
    rate: float = 2.5
    calm: float = 0.0
    crest_hold: float = 30.0
    rest: float = 30.0

    @property
    def period(self) -> float:
        return self.calm + 2 * (self.crest - self.low) / self.rate + self.crest_hold + self.rest

    def level_cm(self, t: float) -> float:
        rise = (self.crest - self.low) / self.rate
        t = t % self.period - self.calm
        if t < 0:
            return self.low
        if t < rise:
            return self.low + self.rate * t
        t -= rise
        if t < self.crest_hold:
            return self.crest
        t -= self.crest_hold
        if t < rise:
            return self.crest - self.rate * t
        return self.low

    def tips(self, t: float, every: float = 6.0) -> int:
        """The rain gauge's tip counter (0.2 mm a tip: 120 mm/h, a downpour), 16 bits."""
        return int(t // every) % 65536

    def registers(self, t: float, mounting_mm: int = 6000) -> list[int]:
        """holding 0-2 as the sensor serves them: level mm, air gap mm, status 0."""
        level_mm = round(self.level_cm(t) * 10)
        return [level_mm, max(0, mounting_mm - level_mm), 0]


def _modbus_device(unit: int, registers: list[int]) -> Any:
    """``unit`` serving ``registers`` from holding register 0 (every other kind of point
    is absent; pymodbus needs a block of each, parked far away)."""
    from pymodbus.simulator import DataType, SimData, SimDevice

    def parked(kind: DataType) -> list[SimData]:
        return [
            SimData(60000, values=[0] if kind == DataType.REGISTERS else [False], datatype=kind)
        ]

    holding = [SimData(0, values=registers, datatype=DataType.REGISTERS)]
    blocks = (parked(DataType.BITS), parked(DataType.BITS), holding, parked(DataType.REGISTERS))
    return SimDevice(id=unit, simdata=blocks)


class SerialPair:
    """A pseudo-terminal whose far end (``path``) a driver opens as a serial port."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # held open: data written before the driver opens it waits
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class Devices:
    def __init__(self, speed: float, out: Any = sys.stdout) -> None:
        self.speed = speed
        self.out = out
        self.river = River()
        self.modbus_port = free_port()
        self.app_port = free_port()
        self.pos = SerialPair()
        self.printer = SerialPair()
        self.printed = 0
        self._app: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def elapsed(self, since: float | None = None) -> float:
        """Demo time: seconds since the start (or ``since``), times the speed."""
        assert self._loop is not None
        start = self._start if since is None else since
        return (self._loop.time() - start) * self.speed

    async def sleep(self, demo_seconds: float) -> None:
        await asyncio.sleep(demo_seconds / self.speed)

    # the river level sensor

    async def river_sensor(self) -> None:
        from pymodbus.server import ModbusTcpServer

        loop = asyncio.get_running_loop()
        rising: list[float] = []  # the river starts rising when the gateway first connects

        def connected(up: bool) -> None:
            if up and not rising:
                rising.append(loop.time())

        server = ModbusTcpServer(
            [_modbus_device(LEVEL_UNIT, self.river.registers(0)), _modbus_device(RAIN_UNIT, [0])],
            address=("127.0.0.1", self.modbus_port),
            trace_connect=connected,
        )
        await server.serve_forever(background=True)
        try:
            shown = None
            while True:
                t = self.elapsed(rising[0]) if rising else 0.0
                await server.context.async_setValues(
                    LEVEL_UNIT, HOLDING, 0, self.river.registers(t)
                )
                await server.context.async_setValues(RAIN_UNIT, HOLDING, 0, [self.river.tips(t)])
                level = round(self.river.level_cm(t))
                if level // 10 != shown:
                    shown = level // 10
                    self.say(f"river level {level} cm")
                await self.sleep(0.5)
        finally:
            await server.shutdown()

    # the POS printing receipts, the printer swallowing them

    async def pos_replay(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.printer.master, self._swallow)
        captures = [(name, (GOLDEN_ESCPOS / name).read_bytes()) for name in RECEIPT_FILES]
        try:
            while True:
                for name, data in captures:
                    await self._print(data)
                    self.say(f"POS printed {name} ({len(data)} bytes)")
                    await self.sleep(8)
        finally:
            loop.remove_reader(self.printer.master)

    async def _print(self, data: bytes) -> None:
        chunk = max(16, round(SERIAL_BYTES_PER_S * self.speed / 10))
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            while piece:
                try:
                    piece = piece[os.write(self.pos.master, piece) :]
                except BlockingIOError:  # nobody reads the port yet: wait
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)

    def _swallow(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self.printed += len(os.read(self.printer.master, 65536))

    # the city application that goes down and comes back

    async def city_app(self) -> None:
        while True:
            self._app = await asyncio.start_server(_answer_health, "127.0.0.1", self.app_port)
            self.say(f"city app lapor-kota up on port {self.app_port}")
            await self.sleep(40)
            self._app.close()
            await self._app.wait_closed()
            self._app = None
            self.say("city app lapor-kota stopped")
            await self.sleep(20)

    # all of it

    async def run(self, state: Path) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, stop.set)
        tasks = [
            asyncio.create_task(job())
            for job in (self.river_sensor, self.pos_replay, self.city_app)
        ]
        await asyncio.sleep(0.2)  # the servers listen
        failed = [t for t in tasks if t.done()]
        if not failed:
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.describe(), indent=2))
            tmp.replace(state)
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        self.pos.close()
        self.printer.close()
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        return {
            "modbus_port": self.modbus_port,
            "pos_port": self.pos.path,
            "printer_port": self.printer.path,
            "app_port": self.app_port,
            "speed": self.speed,
        }


async def _answer_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = b'{"status": "ok", "app": "lapor-kota"}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
        writer.close()
        await writer.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo_devices", description=__doc__)
    parser.add_argument("--state", type=Path, required=True, help="write the ports here")
    parser.add_argument("--speed", type=float, default=1.0, help="timeline speed (default 1)")
    args = parser.parse_args(argv)
    if not 0.1 <= args.speed <= 100:
        print("error: --speed must be between 0.1 and 100", file=sys.stderr)
        return 2
    try:
        asyncio.run(Devices(args.speed).run(args.state))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
