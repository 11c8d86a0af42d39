"""The registry: sites, gateways, devices and dead letters, in SQLite under ``data_dir``
or in PostgreSQL when ``database.url`` is set (``central.database``: one code path).

A gateway first heard on the broker is added at once; one added by provisioning
shows as ``never-seen`` until it speaks. ``last_seen`` is kept in memory and
written at most every few seconds, so telemetry doesn't cost a disk write. The
latest health message of each gateway is kept (``gateway_health``; the history
goes to InfluxDB), and so is the unit each metric last came with
(``metric_units``), for the dashboard.

Sites carry an IANA time zone; the Indonesian aliases WIB, WITA and WIT are
accepted on input and stored as Asia/Jakarta, Asia/Makassar and Asia/Jayapura.

Exceptions::

    RegistryError
    ├── NotFound     no such site / gateway
    └── Conflict     it exists already, or is still in use
"""

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

import wire
from central.database import Database, IntegrityError, Result, Target

DEFAULT_TIMEZONE = "Asia/Jakarta"
TIMEZONE_ALIASES = {"WIB": "Asia/Jakarta", "WITA": "Asia/Makassar", "WIT": "Asia/Jayapura"}


class RegistryError(Exception):
    pass


class NotFound(RegistryError):
    pass


class Conflict(RegistryError):
    pass


def normalize_timezone(value: str) -> str:
    """WIB / WITA / WIT (any case) or an IANA name → the IANA name; ValueError otherwise."""
    alias = TIMEZONE_ALIASES.get(value.strip().upper())
    if alias:
        return alias
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use WIB, WITA, WIT or an IANA name such as Asia/Jakarta"
        ) from None
    return value


MIGRATIONS: list[str] = [
    # 1: the schema as it shipped with SQLite only
    """
CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY,
    timezone TEXT NOT NULL DEFAULT 'Asia/Jakarta',
    description TEXT,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY,
    site TEXT,
    name TEXT,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    status TEXT NOT NULL DEFAULT 'never-seen',
    first_seen DOUBLE PRECISION,
    last_seen DOUBLE PRECISION,
    agent_version TEXT,
    last_seq BIGINT,
    provisioned INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    profile TEXT,
    driver TEXT,
    interval DOUBLE PRECISION,
    updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (gateway, id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id {id},
    received DOUBLE PRECISION NOT NULL,
    topic TEXT NOT NULL,
    gateway TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload {blob} NOT NULL
);
""",
    # 2: which lines of a dead-lettered message InfluxDB refused
    "ALTER TABLE dead_letters ADD COLUMN lines TEXT",
    # 3: each gateway's latest health message, and the unit each metric last came with
    """
CREATE TABLE IF NOT EXISTS gateway_health (
    gateway TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    health TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metric_units (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    unit TEXT NOT NULL,
    PRIMARY KEY (gateway, device, metric)
);
""",
    # 4: where a gateway's site came from: 'registry' (provisioning or an operator) or
    # 'first-heard' (its first message, because the registry had none; flagged in the API)
    "ALTER TABLE gateways ADD COLUMN site_source TEXT",
]

DEAD_LETTER_KEEP_BYTES = 1024 * 1024


@dataclass
class Seen:
    last_seen: float
    last_seq: int | None
    dirty: bool = True


class Registry:
    def __init__(self, where: Target | Path, dead_letters_max: int = 10_000) -> None:
        if isinstance(where, Path):
            where = Target("sqlite", str(where))
        self.target = where
        self.dead_letters_max = dead_letters_max
        self._db = Database(where, name="pantau-central registry")
        self._db.migrate("registry", MIGRATIONS)
        self._lock = self._db.lock
        self._seen: dict[str, Seen] = {}
        # every gateway's site, for ingest (bounded by limits.gateways)
        self._sites: dict[str, str | None] = {
            r["id"]: r["site"] for r in self._db.rows("SELECT id, site FROM gateways")
        }
        self._units: dict[tuple[str, str, str], str] = {
            (r["gateway"], r["device"], r["metric"]): r["unit"]
            for r in self._db.rows("SELECT * FROM metric_units")
        }

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def knows(self, gateway: str) -> bool:
        return gateway in self._sites

    @property
    def gateway_count(self) -> int:
        return len(self._sites)

    def site_of(self, gateway: str) -> str | None:
        """The gateway's site as the registry has it (never what its payload says)."""
        return self._sites.get(gateway)

    def close(self) -> None:
        self.flush()
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> Result:
        return self._db.execute(sql, args)

    # what the broker tells us

    def heard(
        self, gateway: str, site: str | None, seq: int | None, now: float | None = None
    ) -> bool:
        """Record a message from ``gateway``; True when it is the first we ever heard.

        ``site`` is what its payload says: it becomes the gateway's site only when the
        registry has none (``site_source`` 'first-heard'); otherwise it is ignored."""
        now = time.time() if now is None else now
        first = gateway not in self._sites
        if first:
            with self._lock:
                self._db.execute(
                    "INSERT INTO gateways (id, site, site_source, status, first_seen, last_seen, "
                    "last_seq, created) VALUES (?, ?, ?, 'online', ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (gateway, site, "first-heard" if site else None, now, now, seq, now),
                )
                self._sites[gateway] = site
        seen = self._seen.get(gateway)
        if seen is None:
            self._seen[gateway] = Seen(now, seq)
            if not first:
                self._exec(
                    "UPDATE gateways SET status = 'online', first_seen = COALESCE(first_seen, ?) "
                    "WHERE id = ?",
                    (now, gateway),
                )
                if site and self._sites.get(gateway) is None:
                    self._exec(
                        "UPDATE gateways SET site = ?, site_source = 'first-heard' "
                        "WHERE id = ? AND site IS NULL",
                        (site, gateway),
                    )
                    self._sites[gateway] = site
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
                with self._db.transaction():
                    self._db.execute("DELETE FROM devices WHERE gateway = ?", (message.gateway,))
                    self._db.executemany(
                        "INSERT INTO devices (gateway, id, profile, driver, interval, updated) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (message.gateway, d.id, d.profile, d.driver, d.interval, now)
                            for d in message.devices
                        ],
                    )
            else:
                self._db.execute(
                    "UPDATE gateways SET status = 'offline' WHERE id = ?", (message.gateway,)
                )

    def health(self, message: wire.Health, now: float | None = None) -> None:
        """Keep ``message`` as the gateway's latest health (an older one never replaces it)."""
        now = time.time() if now is None else now
        data = json.dumps(msgspec.to_builtins(message), separators=(",", ":"))
        self._exec(
            "INSERT INTO gateway_health (gateway, ts, received, health) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (gateway) DO UPDATE SET ts = excluded.ts, received = excluded.received, "
            "health = excluded.health WHERE excluded.ts >= gateway_health.ts",
            (message.gateway, message.ts / 1000, now, data),
        )

    def units(self, message: wire.Telemetry) -> None:
        """Remember the unit of each metric (written only when it is new or changes)."""
        self.set_units(
            [(message.gateway, r.device, r.metric, r.unit) for r in message.readings if r.unit]
        )

    def set_units(self, units: Iterable[tuple[str, str, str, str]]) -> None:
        """(gateway, device, metric, unit) to remember; only new or changed ones are
        written (ingest passes those :class:`central.limits.Names` found new)."""
        changed = []
        for gateway, device, metric, unit in units:
            key = (gateway, device, metric)
            if self._units.get(key) != unit:
                self._units[key] = unit
                changed.append((*key, unit))
        if changed:
            with self._lock:
                self._db.executemany(
                    "INSERT INTO metric_units (gateway, device, metric, unit) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (gateway, device, metric) DO UPDATE SET unit = excluded.unit",
                    changed,
                )

    def metric_units(self, gateway_id: str) -> dict[tuple[str, str], str]:
        """(device, metric) → unit, as the gateway last sent them."""
        rows = self._db.rows(
            "SELECT device, metric, unit FROM metric_units WHERE gateway = ?", (gateway_id,)
        )
        return {(r["device"], r["metric"]): r["unit"] for r in rows}

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
            rows = self._db.rows(
                "SELECT id FROM gateways WHERE status = 'online' AND last_seen < ?", (older_than,)
            )
            ids = [r["id"] for r in rows]
            self._db.executemany(
                "UPDATE gateways SET status = 'offline' WHERE id = ?", [(i,) for i in ids]
            )
        for gateway in ids:
            self._seen.pop(gateway, None)
        return ids

    # dead letters

    def dead_letter(
        self,
        topic: str,
        gateway: str | None,
        reason: str,
        detail: str,
        payload: bytes,
        *,
        lines: list[str] | None = None,
    ) -> None:
        """``lines``: the line-protocol lines InfluxDB refused (the rest of the message
        is stored); a replay writes only those."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters "
                "(received, topic, gateway, reason, detail, size, payload, lines) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    topic,
                    gateway,
                    reason,
                    detail[:2000],
                    len(payload),
                    payload[:DEAD_LETTER_KEEP_BYTES],
                    "\n".join(lines) if lines else None,
                ),
            )
            self._db.execute(
                "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                (self.dead_letters_max,),
            )

    def dead_letters(
        self,
        limit: int = 100,
        reason: str | None = None,
        gateway: str | None = None,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` (an id) pages back."""
        clauses: list[str] = []
        args: list[Any] = []
        for clause, value in (("reason = ?", reason), ("gateway = ?", gateway), ("id < ?", before)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        sql = "SELECT * FROM dead_letters"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self._exec(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_letter(row) for row in rows]

    def count_dead_letters(self, reason: str | None = None) -> int:
        if reason:
            row = self._exec("SELECT COUNT(*) AS n FROM dead_letters WHERE reason = ?", (reason,))
        else:
            row = self._exec("SELECT COUNT(*) AS n FROM dead_letters")
        return int(row.rows[0]["n"])

    def dead_letters_to_replay(
        self, reason: str | None = None, gateway: str | None = None, after: int = 0
    ) -> list[dict[str, Any]]:
        """Oldest first, 100 at a time from id ``after`` (the raw payload as bytes)."""
        sql = "SELECT * FROM dead_letters WHERE id > ?"
        args: list[Any] = [after]
        for clause, value in (("reason = ?", reason), ("gateway = ?", gateway)):
            if value is not None:
                sql += " AND " + clause
                args.append(value)
        rows = self._exec(sql + " ORDER BY id LIMIT 100", tuple(args)).fetchall()
        return [{**row, "payload": bytes(row["payload"])} for row in rows]

    def forget_dead_letter(self, letter_id: int) -> None:
        """A dead letter replayed and stored: it is gone."""
        self._exec("DELETE FROM dead_letters WHERE id = ?", (letter_id,))

    def refuse_again(
        self, letter_id: int, reason: str, detail: str, lines: list[str] | None = None
    ) -> None:
        """A replay refused again: the letter stays, with the new reason (and lines)."""
        self._exec(
            "UPDATE dead_letters SET reason = ?, detail = ?, lines = ? WHERE id = ?",
            (reason, detail[:2000], "\n".join(lines) if lines else None, letter_id),
        )

    def prune_dead_letters(
        self, max_age: float, max_bytes: int, now: float | None = None
    ) -> dict[str, int]:
        """Delete dead letters older than ``max_age`` seconds, then the oldest until they
        take at most ``max_bytes``; returns how many went, by why (``age``, ``size``)."""
        now = time.time() if now is None else now
        pruned = {"age": 0, "size": 0}
        with self._lock:
            cur = self._db.execute("DELETE FROM dead_letters WHERE received < ?", (now - max_age,))
            pruned["age"] = max(cur.rowcount, 0)
            excess = self.dead_letter_stats()["bytes"] - max_bytes
            while excess > 0:
                oldest = self._db.rows(
                    "SELECT id, LENGTH(payload) + COALESCE(LENGTH(lines), 0) AS bytes "
                    "FROM dead_letters ORDER BY id LIMIT 1000"
                )
                if not oldest:
                    break
                last = oldest[-1]["id"]
                for row in oldest:  # the oldest, just enough of them
                    excess -= int(row["bytes"] or 0)
                    if excess <= 0:
                        last = row["id"]
                        break
                cur = self._db.execute("DELETE FROM dead_letters WHERE id <= ?", (last,))
                pruned["size"] += max(cur.rowcount, 0)
        return pruned

    def dead_letter_stats(self) -> dict[str, Any]:
        """``by_reason`` counts, stored ``bytes`` and the ``oldest`` received time."""
        rows = self._exec(
            "SELECT reason, COUNT(*) AS n, "
            "SUM(LENGTH(payload) + COALESCE(LENGTH(lines), 0)) AS bytes, "
            "MIN(received) AS oldest FROM dead_letters GROUP BY reason"
        ).rows
        oldest = [r["oldest"] for r in rows if r["oldest"] is not None]
        return {
            "by_reason": {r["reason"]: int(r["n"]) for r in rows},
            "bytes": sum(int(r["bytes"] or 0) for r in rows),
            "oldest": min(oldest) if oldest else None,
        }

    def get_dead_letter(self, letter_id: int) -> dict[str, Any] | None:
        row = self._exec("SELECT * FROM dead_letters WHERE id = ?", (letter_id,)).fetchone()
        return _letter(row) if row else None

    # sites

    def sites(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._exec("SELECT * FROM sites ORDER BY name").fetchall()]

    def site(self, name: str) -> dict[str, Any] | None:
        row = self._exec("SELECT * FROM sites WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def site_timezone(self, site: str | None) -> str:
        """The IANA time zone of ``site``; Asia/Jakarta (WIB) when unknown."""
        if not site:
            return DEFAULT_TIMEZONE
        row = self._exec("SELECT timezone FROM sites WHERE name = ?", (site,)).fetchone()
        return str(row["timezone"]) if row else DEFAULT_TIMEZONE

    def create_site(
        self, name: str, timezone: str = DEFAULT_TIMEZONE, description: str | None = None
    ) -> dict[str, Any]:
        timezone = normalize_timezone(timezone)
        try:
            self._exec(
                "INSERT INTO sites (name, timezone, description, created) VALUES (?, ?, ?, ?)",
                (name, timezone, description, time.time()),
            )
        except IntegrityError:
            raise Conflict(f"site {name!r} exists already") from None
        return self.site(name) or {}

    def update_site(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        changes = {k: v for k, v in changes.items() if k in ("timezone", "description")}
        if "timezone" in changes:
            changes["timezone"] = normalize_timezone(changes["timezone"])
        with self._lock:
            if self.site(name) is None:
                raise NotFound(f"no site {name!r}")
            if changes:
                assignments = ", ".join(f"{k} = ?" for k in changes)
                self._db.execute(
                    f"UPDATE sites SET {assignments} WHERE name = ?", (*changes.values(), name)
                )
        return self.site(name) or {}

    def delete_site(self, name: str) -> None:
        with self._lock:
            if self.site(name) is None:
                raise NotFound(f"no site {name!r}")
            used = self._db.rows("SELECT COUNT(*) AS n FROM gateways WHERE site = ?", (name,))
            count = int(used[0]["n"])
            if count:
                raise Conflict(f"site {name!r} still has {count} gateway(s)")
            self._db.execute("DELETE FROM sites WHERE name = ?", (name,))

    # gateways, as provisioning and operators manage them

    def create_gateway(
        self,
        gateway_id: str,
        *,
        site: str | None = None,
        name: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        timezone: str | None = None,
    ) -> dict[str, Any]:
        """A provisioned gateway: ``never-seen`` until it speaks. A site not yet in the
        registry is added with ``timezone`` (default WIB)."""
        if not wire.gateway_id_ok(gateway_id):
            raise ValueError(f"invalid gateway id {gateway_id!r}")
        if timezone is not None:
            timezone = normalize_timezone(timezone)
        with self._lock:
            if site and self.site(site) is None:
                self.create_site(site, timezone or DEFAULT_TIMEZONE)
            try:
                self._db.execute(
                    "INSERT INTO gateways (id, site, site_source, name, lat, lon, status, "
                    "provisioned, created) VALUES (?, ?, ?, ?, ?, ?, 'never-seen', 1, ?)",
                    (gateway_id, site, "registry" if site else None, name, lat, lon, time.time()),
                )
            except IntegrityError:
                raise Conflict(f"gateway {gateway_id!r} exists already") from None
            self._sites[gateway_id] = site
        return self.gateway(gateway_id) or {}

    def update_gateway(self, gateway_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        allowed = ("site", "name", "lat", "lon")
        changes = {k: v for k, v in changes.items() if k in allowed}
        if "site" in changes:  # an operator's word: no longer first-heard
            changes["site_source"] = "registry" if changes["site"] else None
        with self._lock:
            if self.gateway(gateway_id) is None:
                raise NotFound(f"no gateway {gateway_id!r}")
            if changes:
                assignments = ", ".join(f"{k} = ?" for k in changes)
                self._db.execute(
                    f"UPDATE gateways SET {assignments} WHERE id = ?",
                    (*changes.values(), gateway_id),
                )
                if "site" in changes:
                    self._sites[gateway_id] = changes["site"]
        return self.gateway(gateway_id) or {}

    def delete_gateway(self, gateway_id: str) -> None:
        """Forget a gateway and its devices; if it speaks again it is added anew."""
        with self._lock:
            cur = self._db.execute("DELETE FROM gateways WHERE id = ?", (gateway_id,))
            if cur.rowcount == 0:
                raise NotFound(f"no gateway {gateway_id!r}")
            for table in ("devices", "gateway_health", "metric_units"):
                self._db.execute(f"DELETE FROM {table} WHERE gateway = ?", (gateway_id,))
            self._units = {k: v for k, v in self._units.items() if k[0] != gateway_id}
            self._sites.pop(gateway_id, None)
            self._seen.pop(gateway_id, None)

    # reads

    def gateways(self) -> list[dict[str, Any]]:
        """Every gateway, each with ``health``: its latest health message or None."""
        self.flush()
        health = {r["gateway"]: _health(r) for r in self._db.rows("SELECT * FROM gateway_health")}
        rows = self._exec("SELECT * FROM gateways ORDER BY id").fetchall()
        return [{**r, "health": health.get(r["id"])} for r in rows]

    def gateway(self, gateway_id: str) -> dict[str, Any] | None:
        self.flush()
        row = self._exec("SELECT * FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
        return {**row, "health": self.latest_health(gateway_id)} if row else None

    def latest_health(self, gateway_id: str) -> dict[str, Any] | None:
        """The gateway's latest health message (plus ``received``), or None."""
        row = self._exec("SELECT * FROM gateway_health WHERE gateway = ?", (gateway_id,)).fetchone()
        return _health(row) if row else None

    def count_dead_letters_since(self, since: float) -> int:
        row = self._exec("SELECT COUNT(*) AS n FROM dead_letters WHERE received >= ?", (since,))
        return int(row.rows[0]["n"])

    def devices(self, gateway_id: str) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT * FROM devices WHERE gateway = ? ORDER BY id", (gateway_id,)
        ).fetchall()
        return [dict(r) for r in rows]


def _health(row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row["health"])
    data["received"] = row["received"]
    return data


def _letter(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    payload = bytes(item.pop("payload"))
    item["payload_hex"] = None
    try:
        item["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        item["payload"] = None
        item["payload_hex"] = payload[:4096].hex()
    return item


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
