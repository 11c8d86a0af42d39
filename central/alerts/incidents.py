"""Incidents: one row per firing episode of an alert, with an event log.

``status`` is ``firing`` or ``resolved``; an incident may also be acknowledged
(an operator saw it: no repeat notifications) and silenced (a silence matches
its labels: no notifications). At most one firing incident per fingerprint, so
a restart can never fire an alert twice.
"""

from typing import Any

from central.alerts.engine import Subject, Transition
from central.alerts.store import AlertStore, dumps, loads
from central.database import Executor


class Incidents:
    def __init__(self, store: AlertStore) -> None:
        self.store = store

    # writes, inside the caller's transaction

    def firing_id(self, db: Executor, fingerprint: str) -> int | None:
        row = db.execute(
            "SELECT id FROM incidents WHERE fingerprint = ? AND status = 'firing'", (fingerprint,)
        ).fetchone()
        return int(row["id"]) if row else None

    def open(self, db: Executor, t: Transition) -> int:
        cur = db.execute(
            "INSERT INTO incidents (fingerprint, rule, gateway, device, metric, status, severity, "
            "level, labels, annotations, value, starts_at, updated) "
            "VALUES (?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                t.fingerprint,
                t.rule,
                t.subject.gateway,
                t.subject.device,
                t.subject.metric,
                t.labels.get("severity", ""),
                t.level,
                dumps(t.labels),
                dumps(t.annotations),
                dumps(t.value),
                t.at,
                t.at,
            ),
        )
        incident = int(cur.rows[0]["id"])
        self.log(db, incident, t.at, "firing", level=t.level, value=t.value)
        return incident

    def update(self, db: Executor, incident: int, t: Transition) -> None:
        resolved = t.change == "resolved"
        sets = "updated = ?, value = ?"
        args: list[Any] = [t.at, dumps(t.value)]
        if t.labels:  # an alert of a deleted rule resolves without fresh labels
            sets += ", severity = ?, level = ?, labels = ?, annotations = ?"
            args += [t.labels.get("severity", ""), t.level, dumps(t.labels), dumps(t.annotations)]
        if resolved:
            sets += ", status = 'resolved', ends_at = ?"
            args.append(t.at)
        db.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*args, incident))
        self.log(db, incident, t.at, t.change, level=t.level, value=t.value)

    def notified(self, db: Executor, incident: int, at: float) -> None:
        db.execute(
            "UPDATE incidents SET notified = 1, notified_at = ? WHERE id = ?", (at, incident)
        )

    def log(
        self,
        db: Executor,
        incident: int,
        at: float,
        event: str,
        *,
        level: str | None = None,
        value: Any = None,
        detail: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO incident_events (incident, at, event, level, value, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (incident, at, event, level, dumps(value), detail),
        )

    # operator actions

    def ack(self, incident: int, by: str, comment: str, now: float) -> dict[str, Any] | None:
        with self.store.transaction() as db:
            row = db.execute("SELECT status FROM incidents WHERE id = ?", (incident,)).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE incidents SET acked_at = ?, acked_by = ?, ack_comment = ? WHERE id = ?",
                (now, by, comment, incident),
            )
            self.log(db, incident, now, "acknowledged", detail=f"{by}: {comment}".strip(": "))
        return self.get(incident)

    # reads

    def get(self, incident: int) -> dict[str, Any] | None:
        rows = self.store.rows("SELECT * FROM incidents WHERE id = ?", (incident,))
        return decode(rows[0]) if rows else None

    def firing(self) -> list[dict[str, Any]]:
        rows = self.store.rows("SELECT * FROM incidents WHERE status = 'firing' ORDER BY id")
        return [decode(r) for r in rows]

    def search(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        gateway: str | None = None,
        device: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("status", status), ("rule", rule), ("gateway", gateway)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if since is not None:
            where.append("COALESCE(ends_at, updated) >= ?")
            args.append(since)
        if until is not None:
            where.append("starts_at <= ?")
            args.append(until)
        sql = "SELECT * FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.store.rows(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [decode(r) for r in rows]

    def events(self, incident: int) -> list[dict[str, Any]]:
        rows = self.store.rows(
            "SELECT at, event, level, value, detail FROM incident_events WHERE incident = ? "
            "ORDER BY id",
            (incident,),
        )
        for row in rows:
            row["value"] = loads(row["value"])
        return rows


def decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("labels", "annotations", "value"):
        row[key] = loads(row[key])
    row["notified"] = bool(row["notified"])
    return row


def subject_of(row: dict[str, Any]) -> Subject:
    return Subject(row["gateway"], row["device"], row["metric"])
