"""A read buffer under paho's socket, so a burst of small messages costs one ``recv``.

paho reads each MQTT packet with several ``recv`` calls (the type byte, the length
bytes, then the body) and waits in ``select`` before each packet. At the fleet's
shape (thousands of ~2 KB messages a second) those system calls were a large part of
central's per-message cost. :class:`BufferedSocket` reads up to ``CHUNK`` bytes at a
time and serves paho's small reads from memory; its ``pending()`` (which paho also
asks of TLS sockets) tells paho's loop to skip ``select`` while bytes are buffered.

:class:`BufferedClient` is paho's client reading through that buffer, and able to
acknowledge a whole stored batch at once (:meth:`BufferedClient.ack_many`): one
write to the broker for all of the batch's PUBACKs instead of one per message.
"""

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho

CHUNK = 256 * 1024


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

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_PUBACK = struct.Struct("!BBH")  # fixed header (PUBACK), remaining length 2, packet id


class BufferedClient(paho.Client):
    """paho's client over a :class:`BufferedSocket`, with batched acknowledgements.

    Uses two of paho's internals (``_create_socket``, ``_packet_queue``; paho-mqtt is
    pinned in constraints.txt, and ``tests/central/test_mqttsock.py`` checks them)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge these QoS 1 messages (``manual_ack``) in one packet write: the
        same bytes as ``ack(mid, 1)`` for each (a PUBACK without reason code means
        success, in MQTT 3.1.1 and 5), queued as one write instead of one each."""
        packet = b"".join([_PUBACK.pack(paho.PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(paho.PUBACK, packet, 0, 0)
