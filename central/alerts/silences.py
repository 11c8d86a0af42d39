"""Silences: label matchers (globs) and a time window; a silenced alert still opens
and resolves its incident, but sends no notifications while the silence lasts."""

import threading
from typing import Any

from central.alerts.matching import labels_match
from central.alerts.store import AlertStore, dumps, loads


class Silences:
    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: list[dict[str, Any]] | None = None

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
            "VALUES (?, ?, ?, ?, ?, ?)",
            (dumps(matchers), starts_at, ends_at, comment, created_by, now),
        )
        self._forget()
        found = self.get(int(cur.lastrowid or 0))
        assert found is not None
        return found

    def expire(self, silence: int, now: float) -> dict[str, Any] | None:
        self.store.execute(
            "UPDATE silences SET ends_at = MIN(ends_at, ?) WHERE id = ?", (now, silence)
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
            if self._cached is None:
                self._cached = self.search(now - 86400 * 365, include_expired=False)
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
