"""Store-and-forward buffer: readings wait here until the broker acknowledges them.

Two backends share one interface and one test suite: ``MemoryBuffer`` (tests,
diskless gateways) and ``SqliteBuffer`` (SQLite in WAL mode, the default).

Writes are grouped: ``add`` and ``ack`` are held in memory until ``commit``,
which the agent calls at most once per ``buffer.commit_interval`` under load.
A power cut loses at most the readings added since the last commit; acks not
yet committed only mean those readings are sent once more after a restart.
Only committed items are handed to the publisher, so nothing is published that
a restart could forget.

Taking is separate from acknowledging. Each kind has a cursor made of
*segments*: ids in ``(start, pos]`` of a segment have been taken (handed to the
MQTT client, which keeps and re-sends them until their PUBACK) and are never
taken again while the process lives. ``split`` (called on every connect) opens
a new segment above the newest committed id, so that ``take(fresh=True)``
serves readings sampled after the outage while ``take()`` drains the backlog
oldest first; when the head segment reaches the next one they merge. A new
process starts with one empty segment, so everything unacknowledged is taken
again after a restart.

When the items *waiting* to be sent are over ``max_readings`` or ``max_mb``, the
oldest waiting items are dropped first and counted in ``stats().dropped``
(persisted by ``SqliteBuffer``). Items *in flight* (taken and not yet
acknowledged) are never dropped and do not count against the limits: the MQTT
client holds them and sends them again after a reconnect, so they arrive, and
``dropped`` counts exactly the items that are never sent. They are bounded by
the MQTT window, so the buffer stays bounded on disk: its limits plus at most
``mqtt.window`` messages.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

KINDS = {"telemetry": 1, "events": 2}
ROW_OVERHEAD = 40  # bytes SQLite spends per row beyond the body, roughly
DROP_LOG_EVERY = 60.0  # seconds between "buffer full" warnings


CACHE_KIB = 512
"""SQLite's page cache for the buffer, in KiB (a Raspberry Pi's memory is scarce)."""


@dataclass(frozen=True)
class BufferStats:
    depth: int  # committed items not yet acknowledged
    bytes: int
    oldest_ts: int | None  # sample time (ms) of the oldest item
    dropped: int  # items dropped because the buffer was full, ever


@dataclass(frozen=True)
class Item:
    id: int
    body: bytes


class Buffer(Protocol):
    def add(self, kind: str, ts: int, bodies: Sequence[bytes]) -> None: ...
    def commit(self) -> None: ...
    def take(self, kind: str, limit: int, max_bytes: int, fresh: bool = False) -> list[Item]: ...
    def split(self, kind: str) -> bool: ...
    def backlog(self, kind: str) -> bool: ...
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


class _Cursor:
    """Taken ids of one kind: the union of ``(start, pos]`` over the segments."""

    def __init__(self) -> None:
        self.segments: list[list[int]] = [[0, 0]]


class _BufferBase:
    """Pending writes, cursors and the take logic; backends store the rows."""

    def __init__(self, max_items: int | None, max_bytes: int | None) -> None:
        self._limits = _Limits(max_items, max_bytes)
        self._pending: list[tuple[int, int, bytes]] = []
        self._acks: list[int] = []
        self._cursors = {code: _Cursor() for code in KINDS.values()}
        self._lock = threading.Lock()
        self._dropped = 0
        self._last_drop_log = -DROP_LOG_EVERY

    # backend hooks, called with the lock held

    def _fetch(self, code: int, after: int, upto: int | None, limit: int) -> list[Item]:
        raise NotImplementedError

    def _max_id(self, code: int) -> int:
        raise NotImplementedError

    # the shared contract

    def add(self, kind: str, ts: int, bodies: Sequence[bytes]) -> None:
        code = KINDS[kind]
        with self._lock:
            self._pending.extend((code, ts, body) for body in bodies)

    def ack(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._acks.extend(ids)

    def rewind(self) -> None:
        """Forget what was taken: everything unacknowledged is taken again."""
        with self._lock:
            self._cursors = {code: _Cursor() for code in KINDS.values()}

    def split(self, kind: str) -> bool:
        """Serve items committed from now on as *fresh*; True when a backlog exists."""
        code = KINDS[kind]
        with self._lock:
            segments = self._cursors[code].segments
            newest = self._max_id(code)
            if newest > segments[-1][1]:
                segments.append([newest, newest])
            return len(segments) > 1

    def backlog(self, kind: str) -> bool:
        with self._lock:
            return len(self._cursors[KINDS[kind]].segments) > 1

    def take(self, kind: str, limit: int, max_bytes: int, fresh: bool = False) -> list[Item]:
        """Up to ``limit`` committed, untaken items (at least one, at most ``max_bytes``
        otherwise): the oldest, or with ``fresh`` those committed after the last split."""
        code = KINDS[kind]
        with self._lock:
            segments = self._cursors[code].segments
            while True:
                seg = segments[-1] if fresh else segments[0]
                upto = None if fresh or len(segments) == 1 else segments[1][0]
                rows = self._fetch(code, seg[1], upto, limit)
                out: list[Item] = []
                size = 0
                for item in rows:
                    if out and size + len(item.body) > max_bytes:
                        break
                    out.append(item)
                    size += len(item.body)
                if out:
                    seg[1] = out[-1].id
                gap_empty = upto is not None and (
                    seg[1] >= upto or (len(out) == len(rows) and len(rows) < limit)
                )
                if gap_empty:
                    # the head reached the next segment: one segment from here on
                    seg[1] = segments[1][1]
                    del segments[1]
                if out or not gap_empty:
                    return out

    def _in_flight(self, code: int, item_id: int) -> bool:
        """Taken and, while it is still stored, not yet acknowledged."""
        return any(start < item_id <= pos for start, pos in self._cursors[code].segments)

    def _in_flight_sql(self) -> tuple[str, list[int]]:
        """An SQL condition (and its parameters) true for the stored rows in flight."""
        terms: list[str] = []
        params: list[int] = []
        for code, cursor in self._cursors.items():
            for start, pos in cursor.segments:
                if pos > start:
                    terms.append("(kind = ? AND id > ? AND id <= ?)")
                    params += [code, start, pos]
        return " OR ".join(terms) or "0", params

    def _note_dropped(self, count: int) -> None:
        self._dropped += count
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            log.warning(
                "buffer full: dropped the %d oldest items (%d in all since the buffer was made)",
                count,
                self._dropped,
            )


class MemoryBuffer(_BufferBase):
    """The same contract held in memory; lost on restart."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None) -> None:
        super().__init__(max_items, max_bytes)
        self._items: dict[int, tuple[int, int, bytes]] = {}  # id → (kind, ts, body), id order
        self._next_id = 1
        self._bytes = 0
        self._seq = 0

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
            if self._limits.over(len(self._items), self._bytes):
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        waiting = [
            (item_id, len(entry[2]) + ROW_OVERHEAD)
            for item_id, entry in self._items.items()
            if not self._in_flight(entry[0], item_id)
        ]
        depth, size = len(waiting), sum(s for _, s in waiting)
        dropped = 0
        for item_id, item_size in waiting:
            if not self._limits.over(depth, size):
                break
            del self._items[item_id]
            self._bytes -= item_size
            depth -= 1
            size -= item_size
            dropped += 1
        if dropped:
            self._note_dropped(dropped)

    def _fetch(self, code: int, after: int, upto: int | None, limit: int) -> list[Item]:
        out: list[Item] = []
        for item_id, (k, _ts, body) in self._items.items():
            if upto is not None and item_id > upto:
                break
            if k == code and item_id > after:
                out.append(Item(item_id, body))
                if len(out) >= limit:
                    break
        return out

    def _max_id(self, code: int) -> int:
        return max((i for i, entry in self._items.items() if entry[0] == code), default=0)

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

SEQ_BLOCK = 10_000  # sequence numbers reserved per write of the ceiling


class SqliteBuffer(_BufferBase):
    """SQLite in WAL mode, ``synchronous=FULL``; one transaction (one fsync) per ``commit``."""

    def __init__(
        self, path: Path, max_items: int | None = None, max_bytes: int | None = None
    ) -> None:
        super().__init__(max_items, max_bytes)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.moved_aside: Path | None = None
        self._db = self._open()
        self._depth, self._bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items"
        ).fetchone()
        self._bytes += self._depth * ROW_OVERHEAD
        self._dropped = self._meta("dropped")
        self._seq = self._meta("seq_ceiling")
        self._seq_ceiling = self._seq
        self._new_seq_block()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(Path(f"{aside}{suffix}"))
            log.error(
                "buffer %s is unreadable (%s): moved it aside to %s and started a fresh "
                "buffer; readings still in the old file were not sent",
                self.path,
                exc,
                aside,
            )
            self.moved_aside = aside
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # checkpoint every ~16 MiB of WAL: fewer fsyncs on an SD card
            db.execute("PRAGMA wal_autocheckpoint=4096")
            db.execute("PRAGMA journal_size_limit=33554432")
            # rows are written once and read once, in order: the kernel's page cache
            # serves re-reads, so SQLite's own cache stays small (2 MiB by default)
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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

    def commit(self) -> None:
        with self._lock:
            if not self._pending and not self._acks:
                return
            pending, self._pending = self._pending, []
            acks, self._acks = self._acks, []
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(sorted(acks), 500):
                    marks = ",".join("?" * len(chunk))
                    count, size = db.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items "
                        f"WHERE id IN ({marks})",
                        chunk,
                    ).fetchone()
                    db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
                    self._depth -= count
                    self._bytes -= size + count * ROW_OVERHEAD
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
                self._depth, self._bytes = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items"
                ).fetchone()
                self._bytes += self._depth * ROW_OVERHEAD
                raise

    def _drop_oldest(self) -> None:
        in_flight, params = self._in_flight_sql()
        held, held_size = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM items WHERE {in_flight}",
            params,
        ).fetchone()
        depth = self._depth - held  # waiting to be sent
        size = self._bytes - held_size - held * ROW_OVERHEAD
        dropped = 0
        while self._limits.over(depth, size) and depth > 0:
            rows = self._db.execute(
                f"SELECT id, LENGTH(body) FROM items WHERE NOT ({in_flight}) ORDER BY id LIMIT ?",
                [*params, max(depth // 100, 1000)],
            ).fetchall()
            last = None
            for row_id, row_size in rows:
                if not self._limits.over(depth, size):
                    break
                last = row_id
                depth -= 1
                size -= row_size + ROW_OVERHEAD
                self._depth -= 1
                self._bytes -= row_size + ROW_OVERHEAD
                dropped += 1
            if last is None:
                break
            self._db.execute(
                f"DELETE FROM items WHERE id <= ? AND NOT ({in_flight})", [last, *params]
            )
        if dropped:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)",
                (self._dropped + dropped,),
            )
            self._note_dropped(dropped)

    def _fetch(self, code: int, after: int, upto: int | None, limit: int) -> list[Item]:
        if upto is None:
            rows = self._db.execute(
                "SELECT id, body FROM items WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                (code, after, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT id, body FROM items WHERE kind = ? AND id > ? AND id <= ? "
                "ORDER BY id LIMIT ?",
                (code, after, upto, limit),
            ).fetchall()
        return [Item(item_id, bytes(body)) for item_id, body in rows]

    def _max_id(self, code: int) -> int:
        row = self._db.execute("SELECT MAX(id) FROM items WHERE kind = ?", (code,)).fetchone()
        return int(row[0] or 0)

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
