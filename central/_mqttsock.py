"""A read buffer under paho's socket, and a fast path for the messages central lives on.

paho reads each MQTT packet with several ``recv`` calls (the type byte, the length
bytes, then the body), waits in ``select`` before each packet, and builds an
``MQTTMessage`` with a ``Properties`` object for every PUBLISH. At the fleet's shape
(thousands of ~2 KB messages a second) that was most of central's per-message cost.

:class:`BufferedSocket` reads up to ``CHUNK`` bytes at a time and serves paho's small
reads from memory; its ``pending()`` (which paho also asks of TLS sockets) tells
paho's loop to skip ``select`` while bytes are buffered.

:class:`BufferedClient` is paho's client reading through that buffer, with two
additions:

- ``on_qos1``: a handler ``(topic, payload, packet id)`` for QoS 1 PUBLISH packets.
  When it is set, :meth:`BufferedClient.loop_read` takes every complete QoS 1 PUBLISH
  already in the buffer straight to it (a burst of up to ``BURST`` packets per read,
  ended early when ``qos1_room`` says the reader's window is full),
  without paho's per-packet state machine, message object or property parsing (their
  MQTT 5 properties are skipped: central reads none). Every other packet (CONNACK,
  SUBACK, PINGRESP, QoS 0 and 2, a packet not yet wholly received) goes through paho
  as before. Without ``manual_ack`` the burst's PUBACKs go out in one write after it.
- :meth:`BufferedClient.ack_many`: one write to the broker for all of a stored
  batch's PUBACKs instead of one per message.

It uses paho internals (``_create_socket``, ``_packet_queue``, ``_packet_read``,
``_in_packet``, ``_loop_rc_handle``, ``_last_bytes_received``): paho-mqtt is pinned in
constraints.txt, and ``tests/central/test_mqttsock.py`` checks the behaviour against a
real mosquitto.
"""

import ssl
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as paho

CHUNK = 256 * 1024
BURST = 256
"""QoS 1 messages handled per read at most, before paho's loop sends what is queued
(acknowledgements, pings) and checks the keepalive."""

QoS1Handler = Callable[[str, bytes, int], None]
"""Called with (topic, payload, packet id) for each QoS 1 message."""

_PUBACK = struct.Struct("!BBH")  # fixed header (PUBACK), remaining length 2, packet id
_QOS_MASK = 0xF6  # a PUBLISH's first byte without its DUP and RETAIN flags
_PUBLISH_QOS1 = 0x32


def _varint(buf: bytes, at: int, end: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``buf[at:end]`` (at most 4 bytes, 7 bits each):
    (value, where it ends), or (0, -1) when it runs past ``end`` or is too long."""
    value = shift = 0
    for pos in range(at, min(end, at + 4)):
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + 1
        shift += 7
    return 0, -1


class BufferedSocket:
    """Wraps a connected socket (plain or TLS); everything but reads passes through."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, CHUNK))  # BlockingIOError passes up
            if len(data) <= bufsize:
                return bytes(data)
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        chunk = self._buf[self._pos : end]
        self._pos = end
        return chunk

    def fill(self) -> int:
        """Bytes buffered, reading what the socket has when the buffer is empty: 0 when
        it has nothing now, -1 when the peer closed (paho's own read then finds out and
        says so)."""
        if self._pos < len(self._buf):
            return len(self._buf) - self._pos
        try:
            data = self._sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return 0
        self._buf, self._pos = data, 0
        return len(data) or -1

    def take_qos1_publish(self, mqtt5: bool) -> tuple[bytes, bytes, int] | None:
        """The next packet, when it is a QoS 1 PUBLISH wholly in the buffer, as
        (topic, payload, packet id), consumed; else None, and nothing is consumed."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        if pos >= end or buf[pos] & _QOS_MASK != _PUBLISH_QOS1:
            return None
        length, at = _varint(buf, pos + 1, end)  # the remaining length
        if at < 0:
            return None  # not all here yet, or malformed: paho deals with it
        stop = at + length
        if stop > end or length < 4:
            return None
        topic_end = at + 2 + ((buf[at] << 8) | buf[at + 1])
        if topic_end + 2 > stop:
            return None
        mid = (buf[topic_end] << 8) | buf[topic_end + 1]
        body = topic_end + 2
        if mqtt5:  # properties: a variable-length size, then that many bytes, skipped
            size, body = _varint(buf, body, stop)
            if body < 0:
                return None
            body += size
            if body > stop:
                return None
        self._pos = stop
        return buf[at + 2 : topic_end], buf[body:stop], mid

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(paho.Client):
    """paho's client over a :class:`BufferedSocket`, with a fast path for QoS 1
    messages (``on_qos1``) and batched acknowledgements (:meth:`ack_many`)."""

    on_qos1: QoS1Handler | None = None
    qos1_room: Callable[[], bool] | None = None
    """When set, a burst stops taking QoS 1 messages once it answers False (ingest's
    in-flight window is full); paho then reads at most one more packet per read, as
    it always does."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        sock = self._sock
        handler = self.on_qos1
        if handler is None or not isinstance(sock, BufferedSocket):
            return super().loop_read(max_packets)
        mqtt5 = self._protocol == paho.MQTTv5
        acks: list[int] = []
        handled = 0
        try:
            while handled < BURST and self._sock is not None:
                if self._in_packet["command"] == 0:  # between packets
                    buffered = sock.fill()
                    if buffered == 0:
                        break  # all read
                    room = self.qos1_room
                    if buffered > 0 and room is not None and not room():
                        rc = self._packet_read()  # one packet, as paho's own loop_read
                        if rc > 0:
                            return self._loop_rc_handle(rc)
                        handled += 1
                        break
                    found = sock.take_qos1_publish(mqtt5) if buffered > 0 else None
                    if found is not None:
                        topic, payload, mid = found
                        handled += 1
                        try:
                            name = topic.decode()
                        except UnicodeDecodeError:
                            name = topic.decode(errors="replace")  # not a pantau topic
                        handler(name, payload, mid)
                        if not self._manual_ack:
                            acks.append(mid)
                        continue
                rc = self._packet_read()  # anything else: paho's own way
                if rc > 0:
                    return self._loop_rc_handle(rc)
                handled += 1
                if rc == paho.MQTTErrorCode.MQTT_ERR_AGAIN or not sock.pending():
                    break
        finally:
            if handled:
                with self._msgtime_mutex:
                    self._last_bytes_received = time.monotonic()  # paho's time_func
            if acks and self._sock is not None:
                self.ack_many(acks)
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge these QoS 1 messages (``manual_ack``) in one packet write: the
        same bytes as ``ack(mid, 1)`` for each (a PUBACK without reason code means
        success, in MQTT 3.1.1 and 5), queued as one write instead of one each."""
        packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(paho.PUBACK, packet, 0, 0)
