"""Silences: label matchers (globs) and a time window; a silenced alert still opens
and resolves its incident, but sends no notifications while the silence lasts.

The silences in force are cached; another worker's API may add one to the shared
database, so the cache is read again every ``CACHE_SECONDS``."""

import threading
import time
from typing import Any

from central.alerts.matching import labels_match
from central.alerts.store import AlertStore, dumps, loads

CACHE_SECONDS = 2.0


class Silences:
    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: list[dict[str, Any]] | None = None
        self._cached_until = 0.0

    def create(
        self,
        *,
        matchers: dict[str, str],
        starts_at: float,
        ends_at: float,
        comment: str,
        created_by: str,
        now: float,
    ) -> dict[str, Any]:
        cur = self.store.execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (dumps(matchers), starts_at, ends_at, comment, created_by, now),
        )
        self._forget()
        found = self.get(int(cur.rows[0]["id"]))
        assert found is not None
        return found

    def expire(self, silence: int, now: float) -> dict[str, Any] | None:
        self.store.execute(
            "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?", (now, silence, now)
        )
        self._forget()
        return self.get(silence)

    def get(self, silence: int) -> dict[str, Any] | None:
        rows = self.store.rows("SELECT * FROM silences WHERE id = ?", (silence,))
        return _decode(rows[0]) if rows else None

    def search(self, now: float, include_expired: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT * FROM silences"
        args: tuple[Any, ...] = ()
        if not include_expired:
            sql += " WHERE ends_at > ?"
            args = (now,)
        return [_decode(r) for r in self.store.rows(sql + " ORDER BY id DESC", args)]

    def matching(self, labels: dict[str, str], now: float) -> list[int]:
        """Ids of the silences in force now that match these labels."""
        with self._lock:
            if self._cached is None or time.monotonic() >= self._cached_until:
                self._cached = self.search(now - 86400 * 365, include_expired=False)
                self._cached_until = time.monotonic() + CACHE_SECONDS
            cached = self._cached
        return [
            s["id"]
            for s in cached
            if s["starts_at"] <= now < s["ends_at"] and labels_match(s["matchers"], labels)
        ]

    def _forget(self) -> None:
        with self._lock:
            self._cached = None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["matchers"] = loads(row["matchers"])
    return row
