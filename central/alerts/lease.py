"""Which worker evaluates alert rules and sends webhooks: exactly one at a time.

With PostgreSQL (``database.url``) the leader holds a session-level advisory lock on a
connection of its own. If the worker dies, its connection closes and PostgreSQL
releases the lock at once; if the network between them breaks, TCP keepalives
(5 s idle, 3 probes 2 s apart) end the session on both sides within ~11 s. The other
workers try to take the lock every ``RETRY`` seconds, so one of them leads again within
a few seconds, well inside 15 s. The leader checks its connection every ``RETRY``
seconds and steps down the moment it is gone.

With SQLite (one machine) the same rule holds through an exclusive ``flock`` on
``<data_dir>/alerts.lock``, which the kernel releases when the process dies.
"""

import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from central.database import connect_postgres

log = logging.getLogger(__name__)

RETRY = 1.0  # seconds between attempts to lead, and between checks of a held lease
LOCK_KEY = 0x50414E5441  # the PostgreSQL advisory lock key ("PANTA")


class Lease(Protocol):
    def acquire(self) -> bool:
        """Take the lease if nobody holds it (never blocks); True when it is ours."""
        ...

    def held(self) -> bool:
        """Still ours? False once the connection (and with it the lock) is gone."""
        ...

    def release(self) -> None: ...

    def describe(self) -> str: ...


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def describe(self) -> str:
        return f"lock file {self.path}"


class PostgresLease:
    def __init__(self, url: str, name: str = "pantau-central leader") -> None:
        self.url = url
        self.name = name
        self._conn: Any = None

    def acquire(self) -> bool:
        import psycopg

        if self._conn is not None:
            return self.held()
        try:
            conn = connect_postgres(self.url, self.name, connect_timeout=5)
        except psycopg.Error as exc:
            log.warning("cannot reach PostgreSQL to lead alerting: %s", str(exc).strip())
            return False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        except psycopg.Error:
            conn.close()
            return False
        if not row or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        import psycopg

        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # the session ends: PostgreSQL drops the lock
            except Exception:  # already broken: nothing to keep
                pass
            self._conn = None

    def describe(self) -> str:
        return "a PostgreSQL advisory lock"


def make_lease(database_url: str | None, data_dir: Path) -> Lease:
    if database_url:
        return PostgresLease(database_url)
    return FileLease(data_dir / "alerts.lock")
