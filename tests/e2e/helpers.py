"""Running agent and central as real subprocesses for end-to-end tests."""

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def wait_stable(read: Callable[[], Any], timeout: float = 20.0, interval: float = 1.0) -> Any:
    """Wait until two reads ``interval`` apart agree (e.g. nothing more is arriving)."""
    seen: list[Any] = []

    def same() -> bool:
        now = read()
        agreed = bool(seen) and seen[-1] == now
        seen.append(now)
        return agreed

    wait_for(same, timeout=timeout, interval=interval)
    return seen[-1]


class Program:
    """``python -m agent|central run -c CONFIG`` in its own session, stopped by pid."""

    def __init__(self, module: str, config: Path, log: Path) -> None:
        self.module, self.config, self.log = module, config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Program":
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "run", "-c", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def http_status(url: str, token: str | None = None) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing answers."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def run_cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def agent_yaml(gateway: str, mqtt_url: str, buffer: Path, interval: str = "100ms") -> str:
    return f"""\
gateway:
  id: {gateway}
  site: ambon
mqtt:
  url: {mqtt_url}
  username: {gateway}
  password: secret
buffer:
  path: {buffer}
log:
  level: DEBUG   # names any tick a starved poller skipped (never sampled, not lost)
devices:
  - id: counter-1
    profile: simulated/counter
    interval: {interval}
    connection: {{}}
"""


def central_yaml(mqtt_url: str, influx: str, data_dir: Path, client_id: str, api_port: int) -> str:
    return f"""\
mqtt:
  url: {mqtt_url}
  username: central
  password: secret
  client_id: {client_id}
influx:
{influx}
data_dir: {data_dir}
api:
  listen: 127.0.0.1:{api_port}
"""


def counts(influx: Any, db: str, gateway: str) -> list[tuple[int, float]]:
    """(time ms, count) of every stored reading of the gateway's counter, in time order."""
    from scripts.services import ServiceError

    try:
        rows = influx.values(f"SELECT \"count\" FROM readings WHERE gateway = '{gateway}'", db)
    except ServiceError as exc:
        if "database not found" in str(exc):
            return []
        raise
    return [(int(t), v) for t, v in rows]


_SKIPPED = re.compile(r"skipped (\d+) tick\(s\) from ([\d.]+) to ([\d.]+)")


def never_sampled(agent_log: str, interval: float = 0.1) -> set[int]:
    """Counts of the ticks the agent logged as skipped (its poller was starved of CPU)."""
    out: set[int] = set()
    for m in _SKIPPED.finditer(agent_log):
        low, high = round(float(m.group(2)) / interval), round(float(m.group(3)) / interval)
        out.update(range(low, high + 1))
    return out


def assert_contiguous(values: list[float], skipped: set[int] | None = None) -> None:
    """Consecutive counts differ by exactly one: no reading lost, none repeated. A count
    in ``skipped`` was never sampled, so it may be absent."""
    skipped = skipped or set()
    assert len(values) == len(set(values)), "a count was stored twice"
    missing = [
        c
        for a, b in itertools.pairwise(values)
        for c in range(int(a) + 1, int(b))
        if c not in skipped
    ]
    backwards = [(a, b) for a, b in itertools.pairwise(values) if b <= a]
    assert not missing and not backwards, f"missing {missing[:10]}, out of order {backwards[:5]}"
