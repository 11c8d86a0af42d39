"""The gateway's own vitals for ``health``: CPU temperature, load, memory, disk free.

Each reader returns None when the host does not offer the figure (no thermal
zone in a container, no /proc on another OS), never raises. Paths are
parameters so tests can point them at files of their own.
"""

import os
from dataclasses import dataclass
from pathlib import Path

THERMAL = Path("/sys/class/thermal")
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Vitals:
    cpu_temp_c: float | None
    load1: float | None
    mem_used_pct: float | None
    disk_free_mb: float | None


def cpu_temp_c(thermal: Path = THERMAL) -> float | None:
    """The CPU's zone (type containing "cpu" or "soc"), else the first readable zone."""
    try:
        zones = sorted(thermal.glob("thermal_zone*"))
    except OSError:
        return None
    readings: list[tuple[bool, float]] = []
    for zone in zones:
        try:
            milli = int((zone / "temp").read_text().strip())
            kind = (zone / "type").read_text().strip().lower() if (zone / "type").exists() else ""
        except (OSError, ValueError):
            continue
        readings.append(("cpu" in kind or "soc" in kind, milli / 1000))
    if not readings:
        return None
    preferred = [t for is_cpu, t in readings if is_cpu]
    return round((preferred or [readings[0][1]])[0], 1)


def load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def mem_used_pct(meminfo: Path = MEMINFO) -> float | None:
    """100 * (MemTotal - MemAvailable) / MemTotal."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                values[key] = int(fields[0])
    except OSError:
        return None
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    return round(100 * (total - available) / total, 1)


def disk_free_mb(path: Path) -> float | None:
    """Free space for an unprivileged writer on the filesystem holding ``path``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return round(st.f_bavail * st.f_frsize / (1024 * 1024), 1)


def collect(buffer_path: Path, thermal: Path = THERMAL, meminfo: Path = MEMINFO) -> Vitals:
    return Vitals(
        cpu_temp_c=cpu_temp_c(thermal),
        load1=load1(),
        mem_used_pct=mem_used_pct(meminfo),
        disk_free_mb=disk_free_mb(buffer_path.parent),
    )
