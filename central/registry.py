"""The registry: sites, gateways, devices and dead letters, in SQLite under ``data_dir``.

A gateway first heard on the broker is added at once; one added by provisioning
shows as ``never-seen`` until it speaks. ``last_seen`` is kept in memory and
written at most every few seconds, so telemetry doesn't cost a disk write.
"""

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wire

SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY,
    timezone TEXT NOT NULL DEFAULT 'Asia/Jakarta',
    description TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY,
    site TEXT,
    name TEXT,
    lat REAL,
    lon REAL,
    status TEXT NOT NULL DEFAULT 'never-seen',
    first_seen REAL,
    last_seen REAL,
    agent_version TEXT,
    last_seq INTEGER,
    provisioned INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    profile TEXT,
    driver TEXT,
    interval REAL,
    updated REAL NOT NULL,
    PRIMARY KEY (gateway, id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    topic TEXT NOT NULL,
    gateway TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""

DEAD_LETTER_KEEP_BYTES = 1024 * 1024


@dataclass
class Seen:
    last_seen: float
    last_seq: int | None
    dirty: bool = True


class Registry:
    def __init__(self, path: Path, dead_letters_max: int = 10_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dead_letters_max = dead_letters_max
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._seen: dict[str, Seen] = {}
        self._known: set[str] = {r[0] for r in self._db.execute("SELECT id FROM gateways")}

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # what the broker tells us

    def heard(
        self, gateway: str, site: str | None, seq: int | None, now: float | None = None
    ) -> bool:
        """Record a message from ``gateway``; True when it is the first we ever heard."""
        now = time.time() if now is None else now
        first = gateway not in self._known
        if first:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO gateways (id, site, status, first_seen, last_seen, "
                    "last_seq, created) VALUES (?, ?, 'online', ?, ?, ?, ?)",
                    (gateway, site, now, now, seq, now),
                )
                self._known.add(gateway)
        seen = self._seen.get(gateway)
        if seen is None:
            self._seen[gateway] = Seen(now, seq)
            if not first:
                self._exec(
                    "UPDATE gateways SET status = 'online', first_seen = COALESCE(first_seen, ?), "
                    "site = COALESCE(site, ?) WHERE id = ?",
                    (now, site, gateway),
                )
        else:
            seen.last_seen, seen.last_seq, seen.dirty = now, seq, True
        return first

    def state(self, message: wire.State, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.heard(message.gateway, message.site, message.seq or None, now)
        with self._lock:
            if message.status == "online":
                self._db.execute(
                    "UPDATE gateways SET status = 'online', agent_version = ? WHERE id = ?",
                    (message.agent_version, message.gateway),
                )
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM devices WHERE gateway = ?", (message.gateway,))
                self._db.executemany(
                    "INSERT INTO devices (gateway, id, profile, driver, interval, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (message.gateway, d.id, d.profile, d.driver, d.interval, now)
                        for d in message.devices
                    ],
                )
                self._db.execute("COMMIT")
            else:
                self._db.execute(
                    "UPDATE gateways SET status = 'offline' WHERE id = ?", (message.gateway,)
                )

    def flush(self) -> None:
        """Write the in-memory ``last_seen`` times."""
        dirty = [(s.last_seen, s.last_seq, gw) for gw, s in list(self._seen.items()) if s.dirty]
        if not dirty:
            return
        with self._lock:
            self._db.executemany(
                "UPDATE gateways SET last_seen = ?, last_seq = COALESCE(?, last_seq) WHERE id = ?",
                dirty,
            )
        for _, _, gw in dirty:
            self._seen[gw].dirty = False

    def mark_offline(self, older_than: float) -> list[str]:
        """Gateways silent since ``older_than`` become offline; returns their ids."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM gateways WHERE status = 'online' AND last_seen < ?", (older_than,)
            ).fetchall()
            ids = [r[0] for r in rows]
            self._db.executemany(
                "UPDATE gateways SET status = 'offline' WHERE id = ?", [(i,) for i in ids]
            )
        for gateway in ids:
            self._seen.pop(gateway, None)
        return ids

    # dead letters

    def dead_letter(
        self, topic: str, gateway: str | None, reason: str, detail: str, payload: bytes
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters "
                "(received, topic, gateway, reason, detail, size, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    topic,
                    gateway,
                    reason,
                    detail[:2000],
                    len(payload),
                    payload[:DEAD_LETTER_KEEP_BYTES],
                ),
            )
            self._db.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                (self.dead_letters_max,),
            )

    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM dead_letters"
        args: tuple[Any, ...] = ()
        if reason:
            sql += " WHERE reason = ?"
            args = (reason,)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            payload = bytes(item.pop("payload"))
            try:
                item["payload"] = payload.decode("utf-8")
            except UnicodeDecodeError:
                item["payload"] = None
                item["payload_hex"] = payload[:4096].hex()
            out.append(item)
        return out

    def count_dead_letters(self) -> int:
        return int(self._exec("SELECT COUNT(*) FROM dead_letters").fetchone()[0])

    # reads

    def gateways(self) -> list[dict[str, Any]]:
        self.flush()
        return [dict(r) for r in self._exec("SELECT * FROM gateways ORDER BY id").fetchall()]

    def gateway(self, gateway_id: str) -> dict[str, Any] | None:
        self.flush()
        row = self._exec("SELECT * FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
        return dict(row) if row else None

    def devices(self, gateway_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT * FROM devices WHERE gateway = ? ORDER BY id", (gateway_id,)
        ).fetchall()
        return [dict(r) for r in rows]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
