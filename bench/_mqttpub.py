"""Lean MQTT 3.1.1 QoS 1 clients for the benchmarks: many simulated gateways, one thread.

The benchmarks simulate a fleet of gateways on the same cores as the system they
measure. In the field every gateway is its own device, so whatever the simulation
spends is overhead stolen from the system under test. A paho client per gateway
costs a network thread each (hundreds of threads); here one :class:`Fleet` drives
all of a process's gateways over non-blocking sockets on one selector, with the
few packets a QoS 1 publisher needs built and parsed by hand:

    CONNECT → CONNACK (return code 0) → PUBLISH QoS 1 … ← PUBACK … [PINGREQ ← PINGRESP]
    → DISCONNECT

Each gateway has its own TCP connection and client id, at most ``window``
unacknowledged messages, and packet ids 1..65535 that wrap but never reuse an id
still unacknowledged. Anything unexpected (a refused CONNECT, a packet a publisher
never receives, a PUBACK for an id not in flight, a closed connection, a window
stuck for ``stall`` seconds) raises :class:`MqttError`: a harness that lost
messages quietly would make the loss figures lie.

:class:`Subscriber` is the counting end of the broker-alone baseline: one blocking
socket, QoS 1, every message acknowledged (one write of PUBACKs per read).

Not used by agent/ or central/ (they have their own MQTT clients).
"""

import selectors
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = [
    "DISCONNECT_PACKET",
    "PINGREQ_PACKET",
    "Connection",
    "Fleet",
    "Message",
    "MqttError",
    "Packet",
    "PacketIds",
    "PacketReader",
    "Subscriber",
    "connack_code",
    "connect_packet",
    "encode_length",
    "parse_publish",
    "puback_id",
    "puback_packet",
    "publish_packet",
    "suback_codes",
    "subscribe_packet",
]

CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBACK = 9
PINGRESP = 13
MAX_LENGTH = 268_435_455  # the largest remaining length MQTT can encode (4 bytes)
MAX_PACKET_ID = 65_535
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
KINDS = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT",
}  # fmt: skip


class MqttError(Exception):
    """The broker or the connection did something these clients cannot accept."""


# packets


def encode_length(n: int) -> bytes:
    """MQTT's remaining length: 7 bits a byte, low bits first, high bit = more."""
    if not 0 <= n <= MAX_LENGTH:
        raise ValueError(f"remaining length {n} out of range 0..{MAX_LENGTH}")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"MQTT string of {len(data)} bytes (at most 65535)")
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, keepalive: int, clean: bool = True) -> bytes:
    """CONNECT, MQTT 3.1.1, no will, no credentials."""
    flags = b"\x02" if clean else b"\x00"
    body = _string(b"MQTT") + b"\x04" + flags + keepalive.to_bytes(2, "big")
    body += _string(client_id.encode())
    return b"\x10" + encode_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1, not retained, not a duplicate."""
    if not 1 <= packet_id <= MAX_PACKET_ID:
        raise ValueError(f"packet id {packet_id} out of range 1..{MAX_PACKET_ID}")
    head = _string(topic) + packet_id.to_bytes(2, "big")
    return b"\x32" + encode_length(len(head) + len(payload)) + head + payload


def subscribe_packet(topic_filter: bytes, packet_id: int, qos: int = 1) -> bytes:
    """SUBSCRIBE to one topic filter."""
    body = packet_id.to_bytes(2, "big") + _string(topic_filter) + bytes([qos])
    return b"\x82" + encode_length(len(body)) + body


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


@dataclass(frozen=True)
class Packet:
    kind: int  # the control packet type, 1..14
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return KINDS.get(self.kind, f"reserved type {self.kind}")


def _expect(packet: Packet, kind: int, size: int) -> None:
    if packet.kind != kind or packet.flags != 0 or len(packet.body) != size:
        raise MqttError(
            f"malformed {packet.name}: flags {packet.flags:#x}, {len(packet.body)} bytes "
            f"(expected {KINDS[kind]} with flags 0 and {size} bytes)"
        )


def connack_code(packet: Packet) -> int:
    """The CONNACK's return code (0 = accepted)."""
    _expect(packet, CONNACK, 2)
    return packet.body[1]


def puback_id(packet: Packet) -> int:
    """The packet id a PUBACK acknowledges."""
    _expect(packet, PUBACK, 2)
    return int.from_bytes(packet.body, "big")


def suback_codes(packet: Packet) -> tuple[int, list[int]]:
    """(packet id, granted QoS per filter; 0x80 = refused) of a SUBACK."""
    if packet.kind != SUBACK or packet.flags != 0 or len(packet.body) < 3:
        raise MqttError(f"malformed {packet.name} (expected SUBACK)")
    return int.from_bytes(packet.body[:2], "big"), list(packet.body[2:])


@dataclass(frozen=True)
class Message:
    topic: bytes
    payload: bytes
    qos: int
    packet_id: int | None  # None at QoS 0
    dup: bool


def parse_publish(packet: Packet) -> Message:
    """A received PUBLISH at QoS 0 or 1."""
    qos = packet.flags >> 1 & 3
    if packet.kind != PUBLISH:
        raise MqttError(f"unexpected {packet.name} from the broker (expected PUBLISH)")
    if qos > 1:
        raise MqttError(f"PUBLISH at QoS {qos} (subscribed at QoS 1)")
    body = packet.body
    if len(body) < 2:
        raise MqttError("malformed PUBLISH: no topic length")
    end = 2 + int.from_bytes(body[:2], "big")
    packet_id = None
    if qos:
        if len(body) < end + 2:
            raise MqttError("malformed PUBLISH: no packet id")
        packet_id = int.from_bytes(body[end : end + 2], "big")
    elif len(body) < end:
        raise MqttError("malformed PUBLISH: topic longer than the packet")
    payload = body[end + 2 :] if qos else body[end:]
    return Message(body[2:end], payload, qos, packet_id, bool(packet.flags & 8))


def _header(buf: bytearray, pos: int) -> tuple[int, int] | None:
    """(remaining length, where the body starts) of the packet at pos, or None if the
    length is not complete yet."""
    length = 0
    for i in range(4):
        at = pos + 1 + i
        if at >= len(buf):
            return None
        length |= (buf[at] & 0x7F) << (7 * i)
        if not buf[at] & 0x80:
            return length, at + 1
    raise MqttError("malformed remaining length (more than 4 bytes)")


class PacketReader:
    """Splits a received byte stream into packets, whatever the recv boundaries."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return the packets completed by them, in order."""
        self._buf += data
        packets = []
        pos = 0
        while (found := _header(self._buf, pos)) is not None:
            length, start = found
            if start + length > len(self._buf):
                break
            first = self._buf[pos]
            body = bytes(self._buf[start : start + length])
            packets.append(Packet(first >> 4, first & 0x0F, body))
            pos = start + length
        del self._buf[:pos]
        return packets

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole packet yet."""
        return len(self._buf)


class PacketIds:
    """Packet ids 1..65535 in turn, wrapping, skipping ids still unacknowledged."""

    def __init__(self, first: int = 1) -> None:
        if not 1 <= first <= MAX_PACKET_ID:
            raise ValueError(f"packet id {first} out of range 1..{MAX_PACKET_ID}")
        self.next = first
        self.unacked: set[int] = set()

    def take(self) -> int:
        if len(self.unacked) >= MAX_PACKET_ID:
            raise MqttError("all 65535 packet ids are unacknowledged")
        while (pid := self.next) in self.unacked:
            self.next = pid % MAX_PACKET_ID + 1
        self.next = pid % MAX_PACKET_ID + 1
        self.unacked.add(pid)
        return pid

    def release(self, pid: int) -> None:
        if pid not in self.unacked:
            raise MqttError(f"PUBACK for packet id {pid}, which is not in flight")
        self.unacked.remove(pid)


# connections


@dataclass
class Connection:
    """One simulated gateway: its socket, what it has not sent yet, what is unacked."""

    client_id: str
    topic: bytes
    sock: socket.socket
    ids: PacketIds
    reader: PacketReader = field(default_factory=PacketReader)
    out: bytearray = field(default_factory=bytearray)
    connected: bool = False
    closing: bool = False
    closed: bool = False
    last_sent: float = 0.0
    ping_sent: float | None = None
    pings: int = 0
    acked: int = 0

    def fail(self, what: str) -> MqttError:
        return MqttError(
            f"{self.client_id}: {what} ({len(self.ids.unacked)} messages unacknowledged)"
        )

    def send(self, data: bytes, now: float) -> None:
        """Send now what the socket takes; keep the rest for when it is writable."""
        self.last_sent = now
        if self.out:
            self.out += data
            return
        sent = self._send(data)
        if sent < len(data):
            self.out += data[sent:]

    def flush(self) -> None:
        sent = self._send(self.out)
        del self.out[:sent]

    def _send(self, data: bytes | bytearray) -> int:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self.fail(f"sending failed: {exc}") from exc

    def receive(self) -> None:
        """Read what the broker sent and act on every whole packet in it."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            raise self.fail(f"receiving failed: {exc}") from exc
        if not data:
            if self.closing:
                self.closed = True
                return
            raise self.fail("the broker closed the connection")
        try:
            for packet in self.reader.feed(data):
                self._handle(packet)
        except MqttError as exc:
            raise self.fail(str(exc)) from None

    def _handle(self, packet: Packet) -> None:
        if packet.kind == PUBACK and self.connected:
            self.ids.release(puback_id(packet))
            self.acked += 1
        elif packet.kind == CONNACK and not self.connected:
            code = connack_code(packet)
            if code:
                meaning = CONNACK_CODES.get(code, "reserved code")
                raise MqttError(f"the broker refused CONNECT: {meaning} (return code {code})")
            self.connected = True
        elif packet.kind == PINGRESP and self.ping_sent is not None:
            _expect(packet, PINGRESP, 0)
            self.ping_sent = None
            self.pings += 1
        else:
            state = "connected" if self.connected else "before CONNACK"
            raise MqttError(f"unexpected {packet.name} from the broker ({state})")


class Fleet:
    """Simulated gateways on one selector, one thread: connect, publish QoS 1, drain,
    disconnect. ``topic`` and ``client_id`` are format strings taking the gateway."""

    def __init__(
        self,
        port: int,
        gateways: Iterable[str],
        *,
        host: str = "127.0.0.1",
        topic: str = "pantau/v1/{}/telemetry",
        client_id: str = "bench-{}",
        window: int = 64,
        keepalive: int = 30,
        first_id: int = 1,
        stall: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = host, port
        self.window, self.keepalive, self.stall = window, keepalive, stall
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self.conns: dict[str, Connection] = {}
        self._plan = [
            (gw, client_id.format(gw), topic.format(gw).encode(), first_id) for gw in gateways
        ]
        self._checked = 0.0
        self._check_every = min(1.0, keepalive / 4)
        self._released = False

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *_: object) -> None:
        self.abort()

    # lifecycle

    def connect(self, timeout: float = 15.0) -> None:
        """Open every connection and wait until the broker has accepted them all."""
        now = self.clock()
        for gw, cid, topic, first_id in self._plan:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=timeout)
            except OSError as exc:
                raise MqttError(f"{cid}: cannot connect to {self.host}:{self.port}: {exc}") from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn = Connection(cid, topic, sock, PacketIds(first_id))
            self.conns[gw] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)
            conn.send(connect_packet(cid, self.keepalive), now)
            self._want_write(conn)
        self._wait(lambda: all(c.connected for c in self.conns.values()), timeout, "CONNACK")

    def close(self, timeout: float = 10.0) -> None:
        """DISCONNECT every connection, wait for the broker to close them, release all."""
        try:
            now = self.clock()
            for conn in self.conns.values():
                if not conn.closed:
                    conn.closing = True
                    conn.send(DISCONNECT_PACKET, now)
                    self._want_write(conn)
            self._wait(lambda: all(c.closed for c in self.conns.values()), timeout, "close")
        finally:
            self.abort()

    def abort(self) -> None:
        """Close every socket at once (after an error); no-op the second time."""
        if self._released:
            return
        self._released = True
        for conn in self.conns.values():
            if conn.sock.fileno() >= 0:
                self.selector.unregister(conn.sock)
                conn.sock.close()
        self.selector.close()

    # publishing

    def publish(self, gateway: str, payload: bytes) -> int:
        """Queue one QoS 1 message once the gateway has room in its window; returns its
        packet id. Serves the other connections while it waits."""
        conn = self.conns[gateway]
        if len(conn.ids.unacked) >= self.window:
            self._wait(lambda: len(conn.ids.unacked) < self.window, self.stall, "PUBACK")
        pid = conn.ids.take()
        conn.send(publish_packet(conn.topic, payload, pid), self.clock())
        self._want_write(conn)
        return pid

    @property
    def unacked(self) -> int:
        return sum(len(c.ids.unacked) for c in self.conns.values())

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until every message published has been acknowledged."""
        self._wait(lambda: self.unacked == 0, timeout, "PUBACK")

    def poll(self, timeout: float) -> None:
        """Serve the sockets for at most ``timeout`` seconds (returns at the first events,
        or in time for the next keepalive check)."""
        timeout = min(timeout, self._checked + self._check_every - self.clock())
        for key, events in self.selector.select(max(0.0, timeout)):
            conn: Connection = key.data
            if events & selectors.EVENT_WRITE:
                conn.flush()
                self._want_write(conn)
            if events & selectors.EVENT_READ:
                conn.receive()
        self._keep_alive()

    # internals

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = self.clock() + timeout
        while not done():
            left = deadline - self.clock()
            if left <= 0:
                late = [
                    c.client_id for c in self.conns.values() if not c.connected or c.ids.unacked
                ]
                raise MqttError(
                    f"no {what} within {timeout:g} s: {self.unacked} messages unacknowledged "
                    f"on {len(late)} connections (first: {', '.join(late[:3]) or '-'})"
                )
            self.poll(min(left, 1.0))

    def _want_write(self, conn: Connection) -> None:
        if conn.sock.fileno() < 0:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if self.selector.get_key(conn.sock).events != events:
            self.selector.modify(conn.sock, events, conn)

    def _keep_alive(self) -> None:
        """PINGREQ on connections idle for half the keepalive; at most once a second."""
        now = self.clock()
        if now - self._checked < self._check_every:
            return
        self._checked = now
        for conn in self.conns.values():
            if not conn.connected or conn.closing:
                continue
            if conn.ping_sent is not None:
                if now - conn.ping_sent > self.keepalive:
                    raise conn.fail(f"no PINGRESP within {self.keepalive} s")
            elif now - conn.last_sent >= self.keepalive / 2:
                conn.ping_sent = now
                conn.send(PINGREQ_PACKET, now)
                self._want_write(conn)


class Subscriber:
    """One QoS 1 subscriber on a blocking socket: counts what the broker delivers and
    acknowledges every QoS 1 message (one write of PUBACKs per read). Its errors name
    its client id."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        host: str = "127.0.0.1",
        keepalive: int = 30,
        clean: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id, self.keepalive, self.clean, self.clock = client_id, keepalive, clean, clock
        with self._named():
            try:
                self.sock = socket.create_connection((host, port), timeout=15)
            except OSError as exc:
                raise MqttError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = PacketReader()
        self.pending: list[Packet] = []
        self.session_present = False
        self.last_sent = clock()
        self.ping_sent: float | None = None

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def connect(self, timeout: float = 15.0) -> bool:
        """CONNECT; returns whether the broker kept a session for this client id."""
        with self._named():
            self._send(connect_packet(self.client_id, self.keepalive, self.clean))
            connack = self._next(timeout, "CONNACK")
            if code := connack_code(connack):
                meaning = CONNACK_CODES.get(code, "reserved code")
                raise MqttError(f"the broker refused CONNECT: {meaning} (return code {code})")
            self.session_present = bool(connack.body[0] & 1)
            return self.session_present

    def subscribe(self, topic_filter: str, timeout: float = 15.0) -> None:
        """SUBSCRIBE at QoS 1 (after connect); returns once the broker granted QoS 1."""
        with self._named():
            self._send(subscribe_packet(topic_filter.encode(), 1))
            suback = self._next(timeout, "SUBACK")
            if suback_codes(suback) != (1, [1]):
                raise MqttError(f"SUBSCRIBE {topic_filter} not granted at QoS 1: {suback.body!r}")

    def receive(self, timeout: float) -> list[Message]:
        """The messages of one read (waiting at most ``timeout`` s), acknowledged."""
        with self._named():
            self._keep_alive()
            packets, self.pending = self.pending, []
            if not packets:
                packets = self._read(timeout)
            messages = []
            acks = bytearray()
            for packet in packets:
                if packet.kind == PINGRESP and self.ping_sent is not None:
                    self.ping_sent = None
                    continue
                message = parse_publish(packet)
                if message.packet_id is not None:
                    acks += puback_packet(message.packet_id)
                messages.append(message)
            if acks:
                self._send(bytes(acks))
            return messages

    def close(self, timeout: float = 5.0) -> None:
        """DISCONNECT, and wait until the broker closed the connection: by then it has
        read every PUBACK sent before (a new session for the same client id could
        otherwise take over before it did, and get those messages again)."""
        try:
            with self._named():
                self._send(DISCONNECT_PACKET)
                self._wait_closed(timeout)
        finally:
            self.sock.close()

    # internals: raise MqttError without the client id, the public methods add it

    @contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except MqttError as exc:
            raise MqttError(f"{self.client_id}: {exc}") from None

    def _wait_closed(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        try:
            while (left := deadline - self.clock()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return
        except TimeoutError:
            pass
        except OSError as exc:
            raise MqttError(f"closing failed: {exc}") from exc
        raise MqttError(f"the broker did not close the connection within {timeout:g} s")

    def _next(self, timeout: float, what: str) -> Packet:
        deadline = self.clock() + timeout
        while not self.pending:
            left = deadline - self.clock()
            if left <= 0:
                raise MqttError(f"no {what} within {timeout:g} s")
            self.pending = self._read(left)
        packet = self.pending.pop(0)
        if packet.name != what:
            raise MqttError(f"unexpected {packet.name} from the broker (expected {what})")
        return packet

    def _read(self, timeout: float) -> list[Packet]:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            return []
        except OSError as exc:
            raise MqttError(f"receiving failed: {exc}") from exc
        if not data:
            raise MqttError("the broker closed the connection")
        return self.reader.feed(data)

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(15)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise MqttError(f"sending failed: {exc}") from exc
        self.last_sent = self.clock()

    def _keep_alive(self) -> None:
        now = self.clock()
        if self.ping_sent is not None:
            if now - self.ping_sent > self.keepalive:
                raise MqttError(f"no PINGRESP within {self.keepalive} s")
        elif now - self.last_sent >= self.keepalive / 2:
            self._send(PINGREQ_PACKET)
            self.ping_sent = now
