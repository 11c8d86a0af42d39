"""A serial line for tests and benchmarks: two pseudo-terminals wired together."""

import os
import select
import threading
import tty

__all__ = ["PtyBridge"]


class PtyBridge:
    """Two pseudo-terminals whose masters are wired together, like ``socat pty pty``:
    bytes written to ``a`` are read from ``b`` and back. For programs that both want a
    device path (a pymodbus RTU server on one end, the driver on the other)."""

    def __init__(self) -> None:
        self._m1, self._s1 = os.openpty()
        self._m2, self._s2 = os.openpty()
        for fd in (self._s1, self._s2):
            tty.setraw(fd)
        self.a = os.ttyname(self._s1)
        self.b = os.ttyname(self._s2)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._pump, name="pty-bridge", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pairs = {self._m1: self._m2, self._m2: self._m1}
        while True:
            ready, _, _ = select.select([self._m1, self._m2, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for src in ready:
                try:
                    data = os.read(src, 4096)
                    os.write(pairs[src], data)
                except OSError:  # the other end is not open yet / closed
                    continue

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._m1, self._s1, self._m2, self._s2, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
