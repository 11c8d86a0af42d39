"""A plain text progress bar on stderr: ``[#######.......]  45%  1.2 GB  35.0 MB/s``."""

import sys
import time
from typing import TextIO

WIDTH = 30


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._last = 0.0
        self.done = 0

    def update(self, done: int, fraction: float | None = None, force: bool = False) -> None:
        """``done`` bytes so far; ``fraction`` overrides done/total (e.g. compressed input)."""
        self.done = done
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        if fraction is None and self.total:
            fraction = done / self.total
        rate = done / max(now - self.start, 1e-6)
        if fraction is None:
            bar = f"{self.label} {human(done)}  {human(rate)}/s"
        else:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(fraction * WIDTH)
            bar = (
                f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction * 100:3.0f}%  "
                f"{human(done)}  {human(rate)}/s"
            )
        end = "\r" if self.stream.isatty() else "\n"
        self.stream.write(bar + end)
        self.stream.flush()

    def finish(self) -> None:
        self.update(self.done, 1.0 if self.total is not None or self.done else None, force=True)
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
