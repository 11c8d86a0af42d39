"""Alert state in SQLite (``<data_dir>/alerts.db``, WAL): incidents, their event log,
silences and the webhook outbox. One connection shared by threads under a lock."""

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    gateway TEXT NOT NULL,
    device TEXT,
    metric TEXT,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    severity TEXT NOT NULL,
    level TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    value TEXT,
    starts_at REAL NOT NULL,
    ends_at REAL,
    updated REAL NOT NULL,
    notified INTEGER NOT NULL DEFAULT 0,
    notified_at REAL,
    acked_at REAL,
    acked_by TEXT,
    ack_comment TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_firing_per_alert ON incidents (fingerprint)
    WHERE status = 'firing';
CREATE INDEX IF NOT EXISTS incidents_by_start ON incidents (starts_at);
CREATE TABLE IF NOT EXISTS incident_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident INTEGER NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    level TEXT,
    value TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_incident ON incident_events (incident);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    incident INTEGER NOT NULL,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'expired', 'superseded')),
    last_error TEXT,
    response_status INTEGER,
    response_body TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (webhook, state, next_attempt);
"""


class AlertStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self._db.close()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self._db.execute(sql, args)

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Everything inside commits together or not at all."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
