"""A read buffer under paho's socket, so a burst of small messages costs one ``recv``.

paho reads each MQTT packet with several ``recv`` calls (the type byte, the length
bytes, then the body) and waits in ``select`` before each packet. At the fleet's
shape (thousands of ~2 KB messages a second) those system calls were a large part of
central's per-message cost. :class:`BufferedSocket` reads up to ``CHUNK`` bytes at a
time and serves paho's small reads from memory; its ``pending()`` (which paho also
asks of TLS sockets) tells paho's loop to skip ``select`` while bytes are buffered.
"""

from typing import Any

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
