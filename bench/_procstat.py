"""CPU time of processes, read from /proc (Linux), for fair per-component CPU figures."""

import os
import time
from collections.abc import Iterable


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU share of a set of processes over a window: 1.0 = one core fully busy."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._start = {pid: cpu_seconds(pid) for pid in self.pids}
        self._t0 = time.monotonic()

    def share(self) -> float:
        """Since creation: CPU seconds used / wall seconds elapsed."""
        used = sum(cpu_seconds(pid) - self._start[pid] for pid in self.pids)
        return used / max(1e-9, time.monotonic() - self._t0)
