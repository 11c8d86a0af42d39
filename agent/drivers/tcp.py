"""``tcp``: can a TCP port be opened (a camera's RTSP port 554, a radio's web port)?

Each poll connects, optionally sends ``send`` and waits for an answer matching
the regular expression ``expect``, then closes. It reports ``up`` (1 when the
connection opened and, if ``expect`` is set, the answer matched; else 0, with
the reason in the reading's ``error``) and ``connect_ms`` (the time the
connection took to open; bad quality when it did not open). ``up`` is a good
reading either way: "port closed" is a fact, not a failed poll.
"""

import asyncio
import codecs
import re
import socket
import time
from typing import Annotated, Any

import msgspec

from agent.drivers._net import Host, budget, describe, ms
from agent.drivers.base import ConnectionBase, Driver, ProfileBase, Sample
from wire import Duration

MAX_ANSWER = 4096  # bytes read while waiting for ``expect``


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class Escaped(str):
    """Text sent to the device; ``\\r\\n`` style escapes are turned into their bytes, so
    single-quoted YAML works as well as double-quoted."""

    @classmethod
    def parse(cls, value: Any) -> "Escaped":
        if not isinstance(value, str):
            raise ValueError("expected text")
        try:
            return cls(codecs.decode(value.encode("latin-1", "backslashreplace"), "unicode_escape"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"bad escape in {value!r}: {exc.reason}") from None


class BytesRegex(str):
    """A regular expression searched in the device's answer (as bytes)."""

    @classmethod
    def parse(cls, value: Any) -> "BytesRegex":
        if not isinstance(value, str):
            raise ValueError("expected a regular expression")
        try:
            re.compile(value.encode("latin-1", "backslashreplace"))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(value)


class TcpProfile(ProfileBase):
    port: Port | None = None  # default port for this kind of device
    send: Escaped | None = None  # sent after connecting; escapes like \r\n allowed
    expect: BytesRegex | None = None  # regex the first answer must match (searched, bytes)
    timeout: Duration = Duration(3.0)


class TcpConnection(ConnectionBase):
    host: Host
    port: Port | None = None  # overrides the profile
    send: Escaped | None = None  # overrides the profile
    expect: BytesRegex | None = None  # overrides the profile
    timeout: Duration | None = None


class TcpDriver(Driver):
    name = "tcp"
    Profile = TcpProfile
    Connection = TcpConnection

    def _port(self) -> int | None:
        port: int | None = self.connection.port or self.profile.port
        return port

    async def read(self, at: float) -> list[Sample]:
        port = self._port()
        if port is None:
            return self._down("no port: set connection.port or the profile's port")
        send = self.connection.send if self.connection.send is not None else self.profile.send
        expect = (
            self.connection.expect if self.connection.expect is not None else self.profile.expect
        )
        wait = budget(self.device.timeout, self.connection.timeout or self.profile.timeout)
        deadline = time.monotonic() + wait
        started = time.perf_counter()
        try:
            async with asyncio.timeout(wait):
                reader, writer = await asyncio.open_connection(self.connection.host, port)
        except TimeoutError:
            return self._down(f"no answer from {self.connection.host}:{port} within {wait:g}s")
        except socket.gaierror as exc:
            return self._down(f"cannot resolve {self.connection.host}: {exc.strerror}")
        except OSError as exc:
            return self._down(f"{self.connection.host}:{port}: {describe(exc)}")
        connect_ms = ms(time.perf_counter() - started)
        try:
            error = await self._converse(reader, writer, send, expect, deadline)
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel (3.11)
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass
        return [
            Sample("up", 0 if error else 1, error=error),
            Sample("connect_ms", connect_ms, "ms"),
        ]

    async def _converse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        send: str | None,
        expect: str | None,
        deadline: float,
    ) -> str | None:
        """None when the exchange went as the profile says, else what went wrong."""
        if send:
            writer.write(send.encode("latin-1", "backslashreplace"))
        if expect is None:
            return None
        pattern = re.compile(expect.encode("latin-1", "backslashreplace"))
        answer = b""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await writer.drain()
                while len(answer) < MAX_ANSWER:
                    chunk = await reader.read(MAX_ANSWER - len(answer))
                    if not chunk:
                        break
                    answer += chunk
                    if pattern.search(answer):
                        return None
        except TimeoutError:
            pass
        except OSError as exc:
            return f"connection failed while waiting for the answer: {describe(exc)}"
        if pattern.search(answer):
            return None
        shown = answer[:80].decode("latin-1").encode("unicode_escape").decode("ascii")
        return f"answer did not match {expect!r}: '{shown}'"

    def _down(self, error: str) -> list[Sample]:
        return [
            Sample("up", 0, error=error),
            Sample("connect_ms", None, "ms", quality="bad", error=error),
        ]

    def metrics(self) -> list[tuple[str, str | None]]:
        return [("up", None), ("connect_ms", "ms")]
