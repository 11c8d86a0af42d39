"""``ping``: ICMP echo to a host; packet loss and round-trip times.

Each poll sends ``count`` echo requests ``spacing`` apart and waits ``timeout``
after the last one. It reports ``loss_pct`` (always, 100 when nothing came
back), ``up`` (1 when at least one reply came back) and ``rtt_min_ms``,
``rtt_avg_ms``, ``rtt_max_ms`` (bad quality when there was no reply).

How the echoes are sent, tried in this order by ``method: auto``:

1. ``dgram``: an unprivileged ICMP datagram socket, allowed when the process's
   group is inside ``net.ipv4.ping_group_range`` (``sysctl -w
   net.ipv4.ping_group_range="0 2147483647"``);
2. ``raw``: a raw ICMP socket, allowed to root or with ``CAP_NET_RAW``;
3. ``binary``: the system ``ping`` program, its summary lines parsed.

A reply counts only when it matches one of this poll's requests: the echo
identifier (raw sockets; the kernel checks it for datagram sockets), the
sequence number, the source address and the payload, which carries a random
token per poll. Anything else on the socket (other programs' pings, late
replies to an earlier poll, our own requests seen on loopback) is ignored.
"""

import asyncio
import os
import re
import shutil
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from agent.drivers._net import Host, budget, ms
from agent.drivers.base import (
    ConnectionBase,
    DeviceContext,
    Driver,
    DriverError,
    ProfileBase,
    Sample,
)
from wire import Duration, parse_duration

Method = Literal["auto", "dgram", "raw", "binary"]

ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
PROTO: dict[int, int] = {
    socket.AF_INET: socket.IPPROTO_ICMP,
    socket.AF_INET6: socket.IPPROTO_ICMPV6,
}
TOKEN = 8  # random bytes starting each payload
RTT = ("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms")


Count = Annotated[int, msgspec.Meta(ge=1, le=100)]


class Timeout(Duration):
    """A duration that must be more than 0."""

    @classmethod
    def parse(cls, value: Any) -> "Timeout":
        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("timeout must be more than 0")
        return cls(seconds)


class PingProfile(ProfileBase):
    count: Count = 3
    spacing: Duration = Duration(0.2)  # between two echo requests
    timeout: Timeout = Timeout(1.0)  # wait for replies after the last request
    size: Annotated[int, msgspec.Meta(ge=TOKEN, le=1452)] = 56  # payload bytes, like ping -s


class PingConnection(ConnectionBase):
    host: Host
    count: Count | None = None  # overrides the profile
    timeout: Timeout | None = None  # overrides the profile
    method: Method = "auto"
    family: Literal["auto", "ipv4", "ipv6"] = "auto"


@dataclass
class PingResult:
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)  # seconds, one per reply
    summary: tuple[float, float, float] | None = None  # min/avg/max seconds, from ping's output
    error: str | None = None  # why nothing could be sent

    def times(self) -> tuple[float, float, float] | None:
        if self.summary is not None:
            return self.summary
        if not self.rtts:
            return None
        return min(self.rtts), sum(self.rtts) / len(self.rtts), max(self.rtts)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    if family == socket.AF_INET6:  # the kernel fills in the ICMPv6 checksum
        return header + payload
    return struct.pack(
        "!BBHHH", ECHO_REQUEST[family], 0, checksum(header + payload), ident, seq
    ) + (payload)


def parse_reply(family: int, packet: bytes, has_ip_header: bool) -> tuple[int, int, bytes] | None:
    """(identifier, sequence, payload) of an echo reply, or None for anything else."""
    if has_ip_header:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    kind, code, _sum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    if kind != ECHO_REPLY[family] or code != 0:
        return None
    return ident, seq, packet[8:]


def open_socket(method: Literal["dgram", "raw"], family: int) -> socket.socket:
    kind = socket.SOCK_DGRAM if method == "dgram" else socket.SOCK_RAW
    sock = socket.socket(family, kind, PROTO[family])
    sock.setblocking(False)
    return sock


def usable_method(family: int) -> Literal["dgram", "raw", "binary"] | None:
    """The first way to ping that this process is allowed to use."""
    methods: tuple[Literal["dgram", "raw"], ...] = ("dgram", "raw")
    for method in methods:
        try:
            open_socket(method, family).close()
        except OSError:
            continue
        return method
    return "binary" if shutil.which("ping") else None


class Echoer:
    """Sends echo requests on one socket and matches the replies."""

    def __init__(self, sock: socket.socket, method: str, family: int, address: tuple) -> None:
        self.sock = sock
        self.family = family
        self.address = address
        self.raw = method == "raw"
        self.ident = sock.getsockname()[1] if not self.raw else os.getpid() & 0xFFFF
        self.sent_at: dict[int, float] = {}
        self.rtts: dict[int, float] = {}
        self.payload = b""
        self.all_in = asyncio.Event()

    async def run(
        self, first_seq: int, count: int, spacing: float, wait: float, size: int
    ) -> PingResult:
        loop = asyncio.get_running_loop()
        self.payload = os.urandom(TOKEN) + bytes(i & 0xFF for i in range(size - TOKEN))
        result = PingResult()
        receiver = asyncio.create_task(self._receive())
        try:
            for n in range(count):
                if n:
                    await asyncio.sleep(spacing)
                seq = (first_seq + n) & 0xFFFF
                packet = echo_request(self.family, self.ident, seq, self.payload)
                self.sent_at[seq] = time.perf_counter()
                self.all_in.clear()  # set again once this one's reply is in too
                try:
                    await loop.sock_sendto(self.sock, packet, self.address)
                except OSError as exc:
                    del self.sent_at[seq]
                    if self.sent_at and len(self.rtts) == len(self.sent_at):
                        self.all_in.set()
                    result.error = f"cannot send: {exc.strerror or exc}"
                    continue
                result.sent += 1
            if self.sent_at:
                try:
                    async with asyncio.timeout(wait):  # not wait_for: it can lose a cancel
                        await self.all_in.wait()
                except TimeoutError:
                    pass
        finally:
            receiver.cancel()
            try:
                await receiver
            except asyncio.CancelledError:
                pass
        result.rtts = list(self.rtts.values())
        result.received = len(result.rtts)
        return result

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        ip_header = self.raw and self.family == socket.AF_INET
        while True:
            try:
                packet, source = await loop.sock_recvfrom(self.sock, 65535)
            except OSError:
                # an ICMP error queued on the socket: that request just counts as lost
                await asyncio.sleep(0.01)
                continue
            now = time.perf_counter()
            reply = parse_reply(self.family, packet, ip_header)
            if reply is None:
                continue
            ident, seq, payload = reply
            if self.raw and (ident != self.ident or source[0] != self.address[0]):
                continue
            if payload != self.payload or seq not in self.sent_at or seq in self.rtts:
                continue
            self.rtts[seq] = now - self.sent_at[seq]
            if len(self.rtts) == len(self.sent_at) and len(self.sent_at) > 0:
                self.all_in.set()


_TRANSMITTED = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = ([\d.]+)/([\d.]+)/([\d.]+)")


def parse_ping_output(text: str) -> tuple[int, int, tuple[float, float, float] | None]:
    """(transmitted, received, (min, avg, max) ms or None) from iputils' or busybox's ping."""
    counts = _TRANSMITTED.search(text)
    if counts is None:
        raise ValueError("no 'packets transmitted' summary")
    rtt = _RTT.search(text)
    times = (float(rtt[1]), float(rtt[2]), float(rtt[3])) if rtt else None
    return int(counts[1]), int(counts[2]), times


class PingDriver(Driver):
    name = "ping"
    Profile = PingProfile
    Connection = PingConnection

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self.method: str | None = None
        self._seq = int.from_bytes(os.urandom(2), "big")

    @property
    def count(self) -> int:
        return self.connection.count or self.profile.count

    def _wait(self) -> float:
        """Seconds to wait after the last request, inside the poll timeout."""
        configured = self.connection.timeout or self.profile.timeout
        sending = (self.count - 1) * self.profile.spacing
        return max(0.05, budget(self.device.timeout, sending + configured) - sending)

    async def _resolve(self) -> tuple[int, tuple]:
        family = {"auto": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[
            self.connection.family
        ]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.connection.host, None, family=family)
        except socket.gaierror as exc:
            raise DriverError(f"cannot resolve {self.connection.host}: {exc.strerror}") from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, like ping
        fam = int(infos[0][0])
        address: tuple[Any, ...] = tuple(infos[0][4])
        return fam, address[:2] if fam == socket.AF_INET else (address[0], 0, 0, address[3])

    async def read(self, at: float) -> list[Sample]:
        sending = (self.count - 1) * self.profile.spacing
        if sending >= budget(self.device.timeout, None):
            raise DriverError(
                f"{self.count} echoes {self.profile.spacing:g}s apart take {sending:g}s, more "
                f"than the poll timeout ({self.device.timeout:g}s): raise the device's timeout"
            )
        family, address = await self._resolve()
        method = self.connection.method
        if method == "auto":
            method = self.method or usable_method(family) or ""
            if not method:
                raise DriverError(
                    "cannot ping: no ICMP socket allowed and no ping program; "
                    "allow it with: sysctl -w net.ipv4.ping_group_range='0 2147483647'"
                )
            self.method = method
        if method == "binary":
            result = await self._ping_binary(family)
        else:
            result = await self._ping_socket("raw" if method == "raw" else "dgram", family, address)
        return self._samples(result)

    async def _ping_socket(
        self, method: Literal["dgram", "raw"], family: int, address: tuple
    ) -> PingResult:
        try:
            sock = open_socket(method, family)
        except OSError as exc:
            hint = (
                " (set net.ipv4.ping_group_range to include this group)"
                if method == "dgram"
                else " (needs root or CAP_NET_RAW)"
            )
            raise DriverError(f"cannot open a {method} ICMP socket: {exc.strerror}{hint}") from None
        with sock:
            if method == "dgram":
                sock.bind(("", 0) if family == socket.AF_INET else ("::", 0))
            echoer = Echoer(sock, method, family, address)
            first = self._seq
            self._seq = (self._seq + self.count) & 0xFFFF
            return await echoer.run(
                first, self.count, self.profile.spacing, self._wait(), self.profile.size
            )

    async def _ping_binary(self, family: int) -> PingResult:
        binary = shutil.which("ping")
        if binary is None:
            raise DriverError("no ping program found")
        spacing = self.profile.spacing if os.geteuid() == 0 else max(self.profile.spacing, 0.2)
        wait = self._wait()
        deadline = (self.count - 1) * spacing + wait - 0.05
        argv = [binary, "-n", "-c", str(self.count), "-i", f"{spacing:g}"]
        argv += ["-W", f"{max(wait, 0.1):g}", "-w", str(max(1, round(deadline + 0.5)))]
        argv += ["-s", str(self.profile.size), "-6" if family == socket.AF_INET6 else "-4"]
        argv.append(self.connection.host)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        assert proc.stdout is not None and proc.stderr is not None
        reading = asyncio.gather(proc.stdout.read(), proc.stderr.read())
        try:
            # ping's -w counts whole seconds: at our own deadline, SIGINT makes it
            # stop and print its summary, like Ctrl-C
            done, _ = await asyncio.wait({reading}, timeout=deadline)
            if not done:
                proc.send_signal(signal.SIGINT)
                await asyncio.wait({reading}, timeout=0.2)
            out, err = (await reading) if reading.done() else (b"", b"")
        finally:
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
            reading.cancel()
            await proc.wait()
        text = out.decode("utf-8", "replace")
        try:
            transmitted, received, times = parse_ping_output(text)
        except ValueError:
            message = (err or out).decode("utf-8", "replace").strip().splitlines()
            raise DriverError(
                f"ping exited with {proc.returncode}: {message[-1] if message else 'no output'}"
            ) from None
        result = PingResult(sent=transmitted, received=received)
        if received and times:
            result.summary = (times[0] / 1000.0, times[1] / 1000.0, times[2] / 1000.0)
        return result

    def _samples(self, result: PingResult) -> list[Sample]:
        lost = max(self.count - result.received, 0)
        loss = Sample("loss_pct", round(100.0 * lost / self.count, 3), "%")
        times = result.times() if result.received else None
        if times is None:
            error = result.error or f"no reply from {self.connection.host}"
            return [
                loss,
                Sample("up", 0, error=error),
                *(Sample(metric, None, "ms", quality="bad", error=error) for metric in RTT),
            ]
        rtts = [Sample(metric, ms(value), "ms") for metric, value in zip(RTT, times, strict=True)]
        return [loss, Sample("up", 1), *rtts]

    def metrics(self) -> list[tuple[str, str | None]]:
        return [
            ("loss_pct", "%"),
            ("up", None),
            ("rtt_min_ms", "ms"),
            ("rtt_avg_ms", "ms"),
            ("rtt_max_ms", "ms"),
        ]
