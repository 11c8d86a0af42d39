"""Alert state: incidents, their event log, silences and the webhook outbox, in
``<data_dir>/alerts.db`` (SQLite, WAL) or in PostgreSQL when ``database.url`` is set
(``central.database``). One connection shared by threads under a lock."""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from central.database import Database, Result, Target

MIGRATIONS: list[str] = [
    # 1: the schema as it shipped with SQLite only
    """
CREATE TABLE IF NOT EXISTS incidents (
    id {id},
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
    starts_at DOUBLE PRECISION NOT NULL,
    ends_at DOUBLE PRECISION,
    updated DOUBLE PRECISION NOT NULL,
    notified INTEGER NOT NULL DEFAULT 0,
    notified_at DOUBLE PRECISION,
    acked_at DOUBLE PRECISION,
    acked_by TEXT,
    ack_comment TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_firing_per_alert ON incidents (fingerprint)
    WHERE status = 'firing';
CREATE INDEX IF NOT EXISTS incidents_by_start ON incidents (starts_at);
CREATE TABLE IF NOT EXISTS incident_events (
    id {id},
    incident BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    event TEXT NOT NULL,
    level TEXT,
    value TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_by_incident ON incident_events (incident);
CREATE TABLE IF NOT EXISTS silences (
    id {id},
    matchers TEXT NOT NULL,
    starts_at DOUBLE PRECISION NOT NULL,
    ends_at DOUBLE PRECISION NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id {id},
    uid TEXT NOT NULL UNIQUE,
    incident BIGINT NOT NULL,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    body {blob} NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    next_attempt DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed', 'expired', 'superseded')),
    last_error TEXT,
    response_status INTEGER,
    response_body TEXT,
    done_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (webhook, state, next_attempt);
""",
]


class AlertStore:
    """The alert tables, in ``alerts.db`` under data_dir or in PostgreSQL."""

    def __init__(self, where: Target) -> None:
        self.db = Database(where, name="pantau-central alerts")
        self.db.migrate("alerts", MIGRATIONS)
        self.lock = self.db.lock

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.close()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        return self.db.execute(sql, args)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.db.rows(sql, args)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together or not at all."""
        with self.db.transaction() as db:
            yield db


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
