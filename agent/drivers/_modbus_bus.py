"""One Modbus master per line: every device on a serial port (or a Modbus TCP
gateway's host:port) shares one connection, one request on the wire at a time.

Two open file descriptors on one tty split the incoming bytes between them, and a
half-duplex RS-485 line carries one frame at a time, so the devices of one line
take turns on one :class:`ModbusBus`:

- the poller holds the bus (``turn()``) around one poll attempt of one device, outside
  that device's timeout: waiting for the other units never counts against it, and a
  unit that does not answer costs the others its own timeout only;
- the lock is fair (first come, first served), so pollers ticking at the same moment
  are served in turn and none is starved;
- before each request the bus keeps the line quiet for the RTU silent interval
  (3.5 character times; 1.75 ms above 19200 baud), longer after a request that got
  no answer (a late reply must not be taken for the next unit's answer);
- the connection opens when the first device attaches and closes when the last one
  detaches; a broken connection is dropped, and the next attach opens it again.

Modbus TCP gateways get the same treatment without the silent interval; requests are
serialized rather than pipelined, which every gateway accepts.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

CHAR_BITS = 11  # start + 8 data + parity or second stop + stop, as the RTU spec counts
AFTER_TIMEOUT = 0.05  # extra quiet time after a unit did not answer


def silent_interval(baudrate: int) -> float:
    """The RTU inter-frame gap: 3.5 character times, fixed at 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * CHAR_BITS / baudrate


class ModbusBus:
    """One shared pymodbus client and the lock that takes turns on it."""

    def __init__(self, name: str, make_client: Callable[[], Any], silent: float = 0.0) -> None:
        self.name = name  # "/dev/ttyUSB0" or "10.0.0.5:502", for errors
        self._make_client = make_client
        self.silent = silent
        self.client: Any = None
        self._users: set[int] = set()
        self._lock: asyncio.Lock | None = None
        self._quiet_until = 0.0  # monotonic time before which nothing may be sent
        self.requests = 0  # sent on this line, for tests and benchmarks

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:  # made on first use, inside the running loop
            self._lock = asyncio.Lock()
        return self._lock

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self.lock:
            yield

    async def attach(self, user: int) -> Any:
        """Connect if nobody has yet; the caller holds the bus. Raises what connect raises."""
        if self.client is None:
            client = self._make_client()
            try:
                connected = await client.connect()
            except BaseException:
                _close_quietly(client)
                raise
            if not connected:
                _close_quietly(client)
                raise ConnectionError("connect failed")
            self.client = client
        self._users.add(user)
        return self.client

    def detach(self, user: int) -> None:
        self._users.discard(user)
        if not self._users:
            self.drop()

    def drop(self) -> None:
        """Close the connection (lost or unusable); the next attach opens a new one."""
        client, self.client = self.client, None
        if client is not None:
            _close_quietly(client)

    async def quiet(self) -> None:
        """Wait until the line has been quiet for the silent interval."""
        delay = self._quiet_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def sent(self, answered: bool) -> None:
        """Note the end of an exchange: the next frame waits for the silent interval."""
        self.requests += 1
        gap = self.silent if answered else max(self.silent, AFTER_TIMEOUT)
        self._quiet_until = time.monotonic() + gap


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:
        pass


__all__ = ["ModbusBus", "silent_interval"]
