"""Store-and-forward buffer: readings wait here until the broker acknowledges them.

Two backends share one interface and one test suite: ``MemoryBuffer`` (tests,
diskless gateways) and ``SqliteBuffer`` (SQLite in WAL mode, the default).

Writes are grouped: ``add`` and ``ack`` are held in memory until ``commit``,
which the agent calls at most once per ``buffer.commit_interval`` under load.
A power cut loses at most the readings added since the last commit. Only
committed items are handed to the publisher, so nothing is published that a
restart could forget.

When the buffer is over ``max_readings`` or ``max_mb``, the oldest items are
dropped first and counted in ``stats().dropped``.
"""

import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

KINDS = {"telemetry": 1, "events": 2}
ROW_OVERHEAD = 40  # bytes SQLite spends per row beyond the body, roughly


@dataclass(frozen=True)
class BufferStats:
    depth: int
    bytes: int
    oldest_ts: int | None  # sample time (ms) of the oldest item
    dropped: int


@dataclass(frozen=True)
class Item:
    id: int
    body: bytes


class Buffer(Protocol):
    def add(self, kind: str, ts: int, bodies: Sequence[bytes]) -> None: ...
    def commit(self) -> None: ...
    def take(self, kind: str, limit: int, max_bytes: int) -> list[Item]: ...
    def ack(self, ids: Sequence[int]) -> None: ...
    def rewind(self) -> None: ...
    def stats(self) -> BufferStats: ...
    def next_seq(self) -> int: ...
    def close(self) -> None: ...


class _Limits:
    def __init__(self, max_items: int | None, max_bytes: int | None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes

    def over(self, depth: int, size: int) -> bool:
        return (self.max_items is not None and depth > self.max_items) or (
            self.max_bytes is not None and size > self.max_bytes
        )


class MemoryBuffer:
    """The same contract held in memory; lost on restart."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None) -> None:
        self._limits = _Limits(max_items, max_bytes)
        self._items: OrderedDict[int, tuple[int, int, bytes]] = OrderedDict()
        self._pending: list[tuple[int, int, bytes]] = []
        self._acks: list[int] = []
        self._cursor = {kind: 0 for kind in KINDS.values()}
        self._next_id = 1
        self._bytes = 0
        self._dropped = 0
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, kind: str, ts: int, bodies: Sequence[bytes]) -> None:
        code = KINDS[kind]
        with self._lock:
            self._pending.extend((code, ts, body) for body in bodies)

    def commit(self) -> None:
        with self._lock:
            for item_id in self._acks:
                entry = self._items.pop(item_id, None)
                if entry is not None:
                    self._bytes -= len(entry[2]) + ROW_OVERHEAD
            self._acks.clear()
            for entry in self._pending:
                self._items[self._next_id] = entry
                self._next_id += 1
                self._bytes += len(entry[2]) + ROW_OVERHEAD
            self._pending.clear()
            while self._items and self._limits.over(len(self._items), self._bytes):
                _, entry = self._items.popitem(last=False)
                self._bytes -= len(entry[2]) + ROW_OVERHEAD
                self._dropped += 1

    def take(self, kind: str, limit: int, max_bytes: int) -> list[Item]:
        code = KINDS[kind]
        out: list[Item] = []
        size = 0
        with self._lock:
            for item_id, (k, _ts, body) in self._items.items():
                if k != code or item_id <= self._cursor[code]:
                    continue
                if out and size + len(body) > max_bytes:
                    break
                out.append(Item(item_id, body))
                size += len(body)
                if len(out) >= limit:
                    break
            if out:
                self._cursor[code] = out[-1].id
        return out

    def ack(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._acks.extend(ids)

    def rewind(self) -> None:
        with self._lock:
            self._cursor = {kind: 0 for kind in KINDS.values()}

    def stats(self) -> BufferStats:
        with self._lock:
            oldest = next(iter(self._items.values()))[1] if self._items else None
            return BufferStats(len(self._items), self._bytes, oldest, self._dropped)

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def close(self) -> None:
        self.commit()


SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_kind_id ON items (kind, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

SEQ_BLOCK = 10_000


class SqliteBuffer:
    """SQLite in WAL mode; one transaction per ``commit``."""

    def __init__(
        self, path: Path, max_items: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.path = path
        self._limits = _Limits(max_items, max_bytes)
        self._pending: list[tuple[int, int, bytes]] = []
        self._acks: list[int] = []
        self._cursor = {kind: 0 for kind in KINDS.values()}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self._depth, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items"
        ).fetchone()
        self._bytes += self._depth * ROW_OVERHEAD
        self._dropped = self._meta("dropped")
        self._seq_ceiling = self._meta("seq_ceiling")
        self._seq = self._seq_ceiling
        self._new_seq_block()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "buffer %s is unreadable (%s): moved aside to %s, starting a fresh buffer",
                self.path,
                exc,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(Path(f"{aside}{suffix}"))
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _new_seq_block(self) -> None:
        self._seq_ceiling = self._seq + SEQ_BLOCK
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('seq_ceiling', ?)",
            (self._seq_ceiling,),
        )

    def add(self, kind: str, ts: int, bodies: Sequence[bytes]) -> None:
        code = KINDS[kind]
        with self._lock:
            self._pending.extend((code, ts, body) for body in bodies)

    def commit(self) -> None:
        with self._lock:
            if not self._pending and not self._acks:
                return
            pending, self._pending = self._pending, []
            acks, self._acks = self._acks, []
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if acks:
                    freed = 0
                    for chunk in _chunks(acks, 500):
                        marks = ",".join("?" * len(chunk))
                        rows = db.execute(
                            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items "
                            f"WHERE id IN ({marks})",
                            chunk,
                        ).fetchone()
                        db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
                        self._depth -= rows[0]
                        freed += rows[1] + rows[0] * ROW_OVERHEAD
                    self._bytes -= freed
                if pending:
                    db.executemany("INSERT INTO items (kind, ts, body) VALUES (?, ?, ?)", pending)
                    self._depth += len(pending)
                    self._bytes += sum(len(p[2]) + ROW_OVERHEAD for p in pending)
                if self._limits.over(self._depth, self._bytes):
                    self._drop_oldest()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._pending = pending + self._pending
                self._acks = acks + self._acks
                raise

    def _drop_oldest(self) -> None:
        dropped = 0
        while self._limits.over(self._depth, self._bytes) and self._depth > 0:
            excess = max(self._depth // 100, 100)
            rows = self._db.execute(
                "SELECT id, LENGTH(body) FROM items ORDER BY id LIMIT ?", (excess,)
            ).fetchall()
            if not rows:
                break
            self._db.execute("DELETE FROM items WHERE id <= ?", (rows[-1][0],))
            self._depth -= len(rows)
            self._bytes -= sum(size + ROW_OVERHEAD for _, size in rows)
            dropped += len(rows)
        self._dropped += dropped
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)", (self._dropped,)
        )
        log.warning("buffer full: dropped the %d oldest items (%d in all)", dropped, self._dropped)

    def take(self, kind: str, limit: int, max_bytes: int) -> list[Item]:
        code = KINDS[kind]
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM items WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                (code, self._cursor[code], limit),
            ).fetchall()
            out: list[Item] = []
            size = 0
            for item_id, body in rows:
                if out and size + len(body) > max_bytes:
                    break
                out.append(Item(item_id, bytes(body)))
                size += len(body)
            if out:
                self._cursor[code] = out[-1].id
            return out

    def ack(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._acks.extend(ids)

    def rewind(self) -> None:
        with self._lock:
            self._cursor = {kind: 0 for kind in KINDS.values()}

    def stats(self) -> BufferStats:
        with self._lock:
            row = self._db.execute("SELECT ts FROM items ORDER BY id LIMIT 1").fetchone()
            return BufferStats(self._depth, self._bytes, row[0] if row else None, self._dropped)

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            if self._seq >= self._seq_ceiling:
                self._new_seq_block()
            return self._seq

    def close(self) -> None:
        self.commit()
        with self._lock:
            self._db.close()


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def open_buffer(path: Path, max_mb: float, max_readings: int | None) -> SqliteBuffer:
    return SqliteBuffer(path, max_items=max_readings, max_bytes=int(max_mb * 1024 * 1024))
