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

Worker 0's ``/metrics`` counts for all of them: every worker keeps its metric values
in prometheus-client's multiprocess files under ``<data_dir>/prometheus`` (emptied
when worker 0 starts; see ``central.metrics``).

Fewer workers than last time (``<data_dir>/workers.json`` remembers): a broker such as
mosquitto keeps handing a share of the messages to the session of a worker that no
longer runs, where they would wait unread. So worker 0 runs each retired worker once
more in ``--retire`` mode: it leaves the group, stores what the broker kept for it,
and ends its session. A change of ``mqtt.shared_group`` is handled the same way.
"""

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec

from central.config import CentralConfig, SharedGroup
from wire.topics import subscription

log = logging.getLogger(__name__)

DEFAULT_GROUP = "pantau-central"
PR_SET_PDEATHSIG = 1
STATE = "workers.json"
METRICS_DIR = "prometheus"  # under data_dir: the workers' metric files
KINDS = ("telemetry", "events", "state", "health", "cmd/reply")


def worker_config(
    config: CentralConfig, index: int, workers: int, group: str | None = None
) -> CentralConfig:
    """Worker ``index``'s view of central.yaml: its own client id, the shared group."""
    if workers <= 1 and index == 0 and group is None:
        return config
    group = SharedGroup(group or config.mqtt.shared_group or DEFAULT_GROUP)
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


def shared_topics(group: str) -> list[str]:
    return [f"$share/{group}/{subscription(kind)}" for kind in KINDS]


def previous_run(data_dir: Path) -> tuple[int, str | None]:
    """How many workers ran last time, and their shared group (1, None: unknown)."""
    try:
        state = json.loads((data_dir / STATE).read_text())
        return int(state["workers"]), state.get("group")
    except (OSError, ValueError, KeyError, TypeError):
        return 1, None


def record_run(data_dir: Path, workers: int, group: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STATE).write_text(json.dumps({"workers": workers, "group": group}))


def share_metrics(data_dir: Path, *, clean: bool) -> Path:
    """Every worker's metric values in files under ``<data_dir>/prometheus``, for worker
    0's /metrics (prometheus-client's multiprocess mode). Call it before prometheus-client
    is imported: it reads ``PROMETHEUS_MULTIPROC_DIR`` when it loads (the workers started
    later inherit it). ``clean`` (worker 0): start from empty files, counters at 0."""
    path = data_dir / METRICS_DIR
    if clean:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _forget_process(metrics_dir: Path | None, pid: int) -> None:
    """A worker ended: its live gauges no longer count (its counters still do)."""
    if metrics_dir is not None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(metrics_dir))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (worker 0) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child notices when it reads a closed pipe, or lives on


class Workers:
    """Worker 0's children: started, watched, restarted, stopped."""

    def __init__(
        self,
        config_path: Path,
        workers: int,
        retire: list[int] | None = None,
        retire_group: str | None = None,
        stale_group: str | None = None,
        *,
        metrics_dir: Path | None = None,
    ) -> None:
        self.config_path = config_path
        self.metrics_dir = metrics_dir
        self.count = workers
        self.retire = retire or []
        self.retire_group = retire_group
        self.stale_group = stale_group
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, index: int) -> None:
        argv = [sys.executable, "-m", "central", "run", "-c", str(self.config_path)]
        argv += ["--workers", str(self.count), "--worker-index", str(index)]
        if index in self.retire:
            argv += ["--retire", self.retire_group or DEFAULT_GROUP]
        elif self.stale_group:
            argv += ["--stale-group", self.stale_group]
        self.procs[index] = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: PLW1509
        what = "retiring worker" if index in self.retire else "ingest worker"
        log.info("started %s %d (pid %d)", what, index, self.procs[index].pid)

    def start(self) -> None:
        for index in [*range(1, self.count), *self.retire]:
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
                _forget_process(self.metrics_dir, proc.pid)
                if index in self.retire and code == 0:
                    log.info("worker %d retired: its broker session is closed", index)
                    del self.procs[index]
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


def run_worker(
    central_config: CentralConfig,
    index: int,
    path: Path,
    *,
    retire: bool = False,
    stale_group: str | None = None,
    metrics_dir: Path | None = None,
) -> int:
    """A worker without the HTTP API, until SIGTERM / SIGINT; ``retire``: until what the
    broker kept for it is stored, then it ends its session."""
    from central.service import Central

    central = Central(central_config, config_path=path, metrics_dir=metrics_dir)
    if stale_group:
        central.ingest.stale_subscriptions = shared_topics(stale_group)
    if retire:
        central.ingest.retire()
        central.close()
        return 0
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
