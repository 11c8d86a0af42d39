"""Real mosquitto and InfluxDB on free loopback ports, in a directory of their own.

Used by the pytest fixtures, ``make demo`` and the benchmarks::

    python -m scripts.services up --dir .run/services   # prints the ports, keeps running
    python -m scripts.services down --dir .run/services

When a binary is missing and we are root, it is installed from Debian's packages
(``apt-get install -y mosquitto influxdb``); otherwise the error says what to install.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb", "snmpd": "snmpd"}
SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str, install: bool = True) -> str:
    """The path of ``name``; installs its Debian package when root and allowed."""
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if found:
        return found
    package = PACKAGES.get(name, name)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
        return find_binary(name, install=False)
    raise ServiceError(
        f"{name} is not installed: run `sudo apt-get install -y {package}` "
        f"(Debian/Ubuntu/Raspberry Pi OS) and try again"
    )


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig`` to a running ``proc`` and wait; SIGKILL it if it is still there
    after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Service:
    """A child process with a working directory; stopped by its pid."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()

    def _spawn(self, argv: list[str], name: str) -> None:
        self.log_path = self.workdir / f"{name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        log.close()
        (self.workdir / f"{name}.pid").write_text(str(self.proc.pid))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


MOSQUITTO_LIMITS = """\
# Pantau needs these: stock mosquitto silently drops QoS 1 messages once a
# client has 1000 queued, and sends only 20 unacknowledged messages at a time.
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 10000
max_packet_size 1048576
"""


@dataclass
class Mosquitto(Service):
    """mosquitto on 127.0.0.1:<port>, persistence in workdir, anonymous unless ``extra``
    says otherwise (e.g. ``password_file`` / ``acl_file`` lines)."""

    extra: str = ""
    anonymous: bool = True

    def config_text(self) -> str:
        user = "user root\n" if os.geteuid() == 0 else ""
        return (
            f"{user}listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            f"{MOSQUITTO_LIMITS}"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"{self.extra}\n"
        )

    def start(self) -> "Mosquitto":
        binary = find_binary("mosquitto")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        self._spawn([binary, "-c", str(conf)], "mosquitto")
        wait_port(self.port, proc=self.proc)
        return self

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@dataclass
class InfluxDB(Service):
    """InfluxDB 1.x (Debian's 1.6.7) with its HTTP API on 127.0.0.1:<port>."""

    rpc_port: int = 0

    def start(self) -> "InfluxDB":
        binary = find_binary("influxd")
        if not self.rpc_port:
            self.rpc_port = free_port()
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.workdir}/meta"\n'
            f'[data]\n  dir = "{self.workdir}/data"\n  wal-dir = "{self.workdir}/wal"\n'
            '  query-log-enabled = false\n  cache-max-memory-size = "1g"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "  max-body-size = 0\n"
            "[monitor]\n  store-enabled = false\n"
            '[logging]\n  level = "warn"\n'
            "[continuous_queries]\n  enabled = false\n"
        )
        self._spawn([binary, "-config", str(conf)], "influxd")
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(
                    f"influxd exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status == 204:
                        return
            except OSError:
                time.sleep(0.1)
        raise ServiceError(f"influxd not answering /ping on {self.url} after {timeout}s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, q: str, db: str | None = None, epoch: str = "ms") -> dict:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=60) as resp:
            result: dict = json.loads(resp.read())
        return result

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def values(self, q: str, db: str) -> list[list]:
        """The rows of the first series a query returns ([] when none)."""
        result = self.query(q, db)["results"][0]
        if "error" in result:
            raise ServiceError(result["error"])
        series = result.get("series") or []
        return [row for s in series for row in s["values"]]


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PostgreSQL(Service):
    """PostgreSQL 15 (Debian's ``postgresql-15``) on 127.0.0.1:<port>, a cluster of its own
    in a temp dir, trust authentication for local TCP, no Unix socket. As root it runs as
    the ``postgres`` user (initdb refuses root), so its data lives outside ``workdir``
    (pytest's temp dirs are closed to other users) and is removed by :meth:`stop`."""

    database: str = "pantau"
    datadir: Path = field(init=False)

    def start(self) -> "PostgreSQL":
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            raise ServiceError(
                "PostgreSQL 15 is not installed: run `sudo apt-get install -y postgresql-15` "
                "(or scripts/install-system-deps as root)"
            )
        user = "postgres" if os.geteuid() == 0 else None
        import tempfile

        self.datadir = Path(tempfile.mkdtemp(prefix="pantau-pg-"))
        if user:
            shutil.chown(self.datadir, user, user)
        subprocess.run(
            [str(initdb), "-D", str(self.datadir / "data"), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            check=True, capture_output=True, user=user,
        )  # fmt: skip
        self.log_path = self.workdir / "postgres.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.datadir / "data"),
             "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.datadir, start_new_session=True,
            user=user,
        )  # fmt: skip
        log.close()
        (self.workdir / "postgres.pid").write_text(str(self.proc.pid))
        self.wait_ready()
        self.create_database(self.database)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(
                    f"postgres exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                psycopg.connect(self.url_for("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"postgres not answering on {self.port}; see {self.log_path}"
                    ) from exc
                time.sleep(0.1)

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        super().stop(signal.SIGINT if sig == signal.SIGTERM else sig, timeout)  # fast shutdown
        if getattr(self, "datadir", None) is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)


def _up(workdir: Path) -> int:
    broker = Mosquitto(workdir / "mosquitto").start()
    influx = InfluxDB(workdir / "influxdb").start()
    info = {
        "mqtt_url": broker.url,
        "influx_url": influx.url,
        "mosquitto_pid": broker.proc.pid if broker.proc else None,
        "influxd_pid": influx.proc.pid if influx.proc else None,
    }
    (workdir / "services.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return 0


def _down(workdir: Path) -> int:
    for name in ("mosquitto/mosquitto.pid", "influxdb/influxd.pid"):
        pid_file = workdir / name
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
            pid_file.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.services", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "install"])
    parser.add_argument("--dir", type=Path, default=Path(".run/services"))
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            for name in ("mosquitto", "influxd"):
                print(find_binary(name))
            return 0
        if args.action == "up":
            return _up(args.dir.resolve())
        return _down(args.dir.resolve())
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
