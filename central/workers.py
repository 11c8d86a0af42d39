"""``pantau-central run --workers N``: N ingest processes on one machine, one HTTP API.

The process started by systemd (worker 0) runs everything central runs, the HTTP API
included, and starts N-1 more workers (``--worker-index 1..N-1``) that run the same
minus the API. They split the gateways' messages through one MQTT 5 shared
subscription (``mqtt.shared_group``, ``pantau-central`` when unset), so each reading
is written by one worker; each keeps its own persistent session
(``<mqtt.client_id>-<index>``; worker 0 keeps ``mqtt.client_id`` itself). They share
the registry and alert state (``database.url``, or the SQLite files in ``data_dir``),
and exactly one of them, whichever holds the alert lease, evaluates alert rules.

Worker 0 restarts a worker that dies (after 1 s, doubling to 30 s while it keeps
dying) and stops them all when it stops; a worker also ends when worker 0 dies.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from central.config import CentralConfig, SharedGroup

log = logging.getLogger(__name__)

DEFAULT_GROUP = "pantau-central"
PR_SET_PDEATHSIG = 1


def worker_config(config: CentralConfig, index: int, workers: int) -> CentralConfig:
    """Worker ``index``'s view of central.yaml: its own client id, the shared group."""
    if workers <= 1 and index == 0:
        return config
    group = config.mqtt.shared_group or SharedGroup(DEFAULT_GROUP)
    client_id = config.mqtt.client_id if index == 0 else f"{config.mqtt.client_id}-{index}"
    # a broker set up by `pantau-provision broker-config --central-workers N` makes each
    # username the client id, so every worker logs in as its own user (same password)
    username = config.mqtt.username
    if username and index:
        username = f"{username}-{index}"
    mqtt = msgspec.structs.replace(
        config.mqtt, shared_group=group, client_id=client_id, username=username
    )
    return msgspec.structs.replace(config, mqtt=mqtt)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (worker 0) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child notices when it reads a closed pipe, or lives on


class Workers:
    """Worker 0's children: started, watched, restarted, stopped."""

    def __init__(self, config_path: Path, workers: int) -> None:
        self.config_path = config_path
        self.count = workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, index: int) -> None:
        argv = [sys.executable, "-m", "central", "run", "-c", str(self.config_path)]
        argv += ["--workers", str(self.count), "--worker-index", str(index)]
        self.procs[index] = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: PLW1509
        log.info("started ingest worker %d (pid %d)", index, self.procs[index].pid)

    def start(self) -> None:
        for index in range(1, self.count):
            self._spawn(index)
        self._thread = threading.Thread(target=self._watch, name="workers", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        delay = {index: 1.0 for index in self.procs}
        while not self._stop.wait(0.5):
            for index, proc in list(self.procs.items()):
                code = proc.poll()
                if code is None or self._stop.is_set():
                    continue
                log.error("ingest worker %d exited with %s; restarting in %gs",
                          index, code, delay[index])  # fmt: skip
                if self._stop.wait(delay[index]):
                    return
                started = time.monotonic()
                self._spawn(index)
                if time.monotonic() - started < 60:
                    delay[index] = min(delay[index] * 2, 30.0)

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for index, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("ingest worker %d did not stop; killing it", index)
                proc.kill()
                proc.wait()


def run_worker(central_config: CentralConfig, index: int, path: Path) -> int:
    """A worker without the HTTP API, until SIGTERM / SIGINT."""
    from central.service import Central

    central = Central(central_config, config_path=path)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: central.reload())
    central.start()
    log.info("ingest worker %d running (pid %d)", index, os.getpid())
    while not done.wait(1.0):
        pass
    central.stop()
    return 0
