"""The registry and the API tokens, one suite run over both stores: SQLite files under
data_dir and PostgreSQL (``database.url``); and the versioned schema migrations."""

import threading
from pathlib import Path

import pytest

import wire
from central.database import Database, DatabaseError, target
from central.registry import MIGRATIONS, Conflict, NotFound, Registry
from central.tokens import token_store


@pytest.fixture
def registry(tmp_path: Path, database: str | None) -> Registry:
    return Registry(target(database, tmp_path, "registry.db"), dead_letters_max=10)


def reopen(registry: Registry, tmp_path: Path, database: str | None) -> Registry:
    registry.close()
    return Registry(target(database, tmp_path, "registry.db"), dead_letters_max=10)


def test_sites_keep_their_time_zone_and_refuse_duplicates_and_deletes_in_use(
    registry: Registry,
) -> None:
    assert registry.create_site("kota-a", "wita")["timezone"] == "Asia/Makassar"
    with pytest.raises(Conflict, match="exists already"):
        registry.create_site("kota-a")
    assert registry.update_site("kota-a", {"timezone": "WIT"})["timezone"] == "Asia/Jayapura"
    assert registry.site_timezone("kota-a") == "Asia/Jayapura"
    assert registry.site_timezone("nowhere") == "Asia/Jakarta"
    registry.create_gateway("gw-1", site="kota-a")
    with pytest.raises(Conflict, match="still has 1 gateway"):
        registry.delete_site("kota-a")
    with pytest.raises(NotFound):
        registry.update_site("nowhere", {"description": "x"})
    registry.close()


def test_a_gateway_heard_first_is_added_and_its_last_seen_survives_a_reopen(
    registry: Registry, tmp_path: Path, database: str | None
) -> None:
    assert registry.heard("gw-2", "kota-b", 7, now=1000.0) is True
    assert registry.heard("gw-2", "kota-b", 9, now=1005.0) is False
    registry = reopen(registry, tmp_path, database)  # close() flushed last_seen
    gateway = registry.gateway("gw-2")
    assert gateway is not None
    assert (gateway["status"], gateway["last_seen"], gateway["last_seq"]) == ("online", 1005.0, 9)
    assert registry.heard("gw-2", None, 10, now=1010.0) is False  # known after the reopen
    assert registry.mark_offline(older_than=2000.0) == ["gw-2"]
    assert registry.gateway("gw-2")["status"] == "offline"  # type: ignore[index]
    registry.close()


def test_a_provisioned_gateway_is_never_seen_then_its_birth_lists_its_devices(
    registry: Registry,
) -> None:
    registry.create_gateway("gw-3", site="kota-c", name="Pos 3", lat=-6.2, lon=106.8)
    assert registry.gateway("gw-3")["status"] == "never-seen"  # type: ignore[index]
    assert registry.site("kota-c")["timezone"] == "Asia/Jakarta"  # type: ignore[index]
    with pytest.raises(Conflict):
        registry.create_gateway("gw-3")
    with pytest.raises(ValueError, match="invalid gateway id"):
        registry.create_gateway("bad/id")
    birth = wire.State(
        gateway="gw-3",
        seq=0,
        status="online",
        ts=1,
        agent_version="1.2.3",
        devices=[
            wire.DeviceInfo(id="river-1", profile="river/radar", driver="modbus", interval=5.0),
            wire.DeviceInfo(id="rain-1", profile=None, driver="simulated"),
        ],
    )
    registry.state(birth, now=50.0)
    registry.state(birth, now=60.0)  # a second birth replaces the list
    devices = registry.devices("gw-3")
    assert [(d["id"], d["profile"], d["updated"]) for d in devices] == [
        ("rain-1", None, 60.0),
        ("river-1", "river/radar", 60.0),
    ]
    gateway = registry.update_gateway("gw-3", {"name": "Pos 3b", "status": "ignored"})
    assert (gateway["name"], gateway["agent_version"], gateway["status"]) == (
        "Pos 3b",
        "1.2.3",
        "online",
    )
    registry.delete_gateway("gw-3")
    assert registry.gateway("gw-3") is None and registry.devices("gw-3") == []
    with pytest.raises(NotFound):
        registry.delete_gateway("gw-3")
    registry.close()


def test_dead_letters_keep_binary_payloads_page_back_and_are_trimmed(registry: Registry) -> None:
    for n in range(15):
        registry.dead_letter(f"pantau/v1/gw-4/telemetry/{n}", "gw-4", "bad_json", f"n={n}", b"{")
    registry.dead_letter("pantau/v1/gw-5/telemetry", "gw-5", "too_big", "x", b"\xff\x00")
    assert registry.count_dead_letters() == 10  # dead_letters_max=10: the oldest went
    newest = registry.dead_letters(limit=1)[0]
    assert (newest["payload"], newest["payload_hex"], newest["size"]) == (None, "ff00", 2)
    page = registry.dead_letters(limit=3, reason="bad_json", before=newest["id"])
    assert [p["detail"] for p in page] == ["n=14", "n=13", "n=12"]
    assert registry.count_dead_letters("too_big") == 1
    assert registry.get_dead_letter(page[0]["id"])["payload"] == "{"  # type: ignore[index]
    registry.close()


def test_a_token_created_on_one_connection_works_on_another_until_revoked(
    tmp_path: Path, database: str | None
) -> None:
    one, two = token_store(tmp_path, database), token_store(tmp_path, database)
    try:
        info, secret = one.create("read", "dashboard")
        found = two.verify(secret)
        assert found is not None and (found.id, found.role, found.name) == (
            info.id,
            "read",
            "dashboard",
        )
        assert two.verify(secret + "x") is None and two.verify("nope") is None
        assert [t.name for t in one.list()] == ["dashboard"]
        assert one.list()[0].last_used is not None
        assert two.revoke(info.id) is True and two.revoke(info.id) is False
        assert one.verify(secret) is None
    finally:
        one.close()
        two.close()


def test_migrations_are_versioned_applied_once_and_a_newer_schema_is_refused(
    tmp_path: Path, database: str | None
) -> None:
    where = target(database, tmp_path, "registry.db")
    Registry(where).close()
    db = Database(where)
    try:
        assert db.version("registry") == len(MIGRATIONS)
        extra = "ALTER TABLE gateways ADD COLUMN note TEXT; CREATE INDEX by_note ON gateways (note)"
        assert db.migrate("registry", [*MIGRATIONS, extra]) == len(MIGRATIONS) + 1
        assert db.migrate("registry", [*MIGRATIONS, extra]) == len(MIGRATIONS) + 1  # not again
        db.execute("INSERT INTO gateways (id, note, created) VALUES ('gw-6', 'n', 1)")
        with pytest.raises(DatabaseError, match="newer than this pantau-central knows"):
            Registry(where)
    finally:
        db.close()


def test_a_failed_migration_leaves_the_schema_as_it_was(
    tmp_path: Path, database: str | None
) -> None:
    where = target(database, tmp_path, "registry.db")
    db = Database(where)
    try:
        good = "CREATE TABLE things (id {id}, body {blob})"
        bad = "ALTER TABLE things ADD COLUMN note TEXT; ALTER TABLE nowhere ADD COLUMN x TEXT"
        assert db.migrate("things", [good]) == 1
        with pytest.raises(DatabaseError):
            db.migrate("things", [good, bad])
        assert db.version("things") == 1
        db.execute("INSERT INTO things (body) VALUES (?)", (b"\x00\x01",))
        assert db.rows("SELECT * FROM things") == [{"id": 1, "body": b"\x00\x01"}]
    finally:
        db.close()


def test_a_registry_file_from_before_versioned_schemas_opens_and_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    import sqlite3
    from contextlib import closing

    path = tmp_path / "registry.db"
    with closing(sqlite3.connect(path)) as old:  # as the SQLite-only releases left it
        old.executescript(
            "CREATE TABLE gateways (id TEXT PRIMARY KEY, site TEXT, name TEXT, lat REAL, "
            "lon REAL, status TEXT NOT NULL DEFAULT 'never-seen', first_seen REAL, "
            "last_seen REAL, agent_version TEXT, last_seq INTEGER, "
            "provisioned INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);"
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL, "
            "topic TEXT, gateway TEXT, reason TEXT, detail TEXT, size INTEGER, payload BLOB, "
            "lines TEXT);"
            "INSERT INTO gateways (id, created) VALUES ('gw-old', 1);"
        )
    registry = Registry(path)
    try:
        assert registry.gateway("gw-old") is not None
        registry.dead_letter("t", "gw-old", "influx_rejected", "d", b"x", lines=["a b=1"])
        assert registry.dead_letters()[0]["lines"] == "a b=1"
    finally:
        registry.close()
    db = Database(target(None, tmp_path, "registry.db"))
    assert db.version("registry") == len(MIGRATIONS)
    db.close()


def test_latest_health_and_metric_units_are_kept_per_gateway(
    registry: Registry, tmp_path: Path, database: str | None
) -> None:
    def health(ts: int, depth: int) -> wire.Health:
        return wire.Health(gateway="gw-h", seq=1, ts=ts, buffer_depth=depth, dropped=2)

    registry.heard("gw-h", "kota-h", 1)
    assert registry.gateway("gw-h")["health"] is None  # type: ignore[index]
    registry.health(health(2_000_000, 5), now=2001.0)
    registry.health(health(1_000_000, 9), now=2002.0)  # older: never replaces the latest
    latest = registry.latest_health("gw-h")
    assert latest is not None
    assert (latest["buffer_depth"], latest["dropped"], latest["ts"], latest["received"]) == (
        5,
        2,
        2_000_000,
        2001.0,
    )
    reading = {"device": "level-1", "metric": "level_m", "value": 1.0, "ts": 1}
    batch = wire.Telemetry(
        gateway="gw-h",
        seq=2,
        readings=[
            wire.Reading(**reading, unit="m"),  # type: ignore[arg-type]
            wire.Reading(**{**reading, "metric": "status"}),  # type: ignore[arg-type]
        ],
    )
    registry.units(batch)
    registry = reopen(registry, tmp_path, database)
    assert registry.metric_units("gw-h") == {("level-1", "level_m"): "m"}
    assert registry.gateways()[0]["health"]["buffer_depth"] == 5
    registry.delete_gateway("gw-h")
    assert registry.latest_health("gw-h") is None and registry.metric_units("gw-h") == {}
    registry.close()


def test_dead_letters_are_kept_by_age_and_size_and_replayable_rows_round_trip(
    registry: Registry,
) -> None:
    import time

    for n in range(6):
        registry.dead_letter("pantau/v1/gw-d/telemetry", "gw-d", "schema", f"bad {n}", b"x" * 1000)
    registry.dead_letter(
        "pantau/v1/gw-d/telemetry",
        "gw-d",
        "influx_rejected",
        "refused",
        b"{}",
        lines=["a 1", "b 2"],
    )
    stats = registry.dead_letter_stats()
    assert stats["by_reason"] == {"schema": 6, "influx_rejected": 1}
    assert stats["bytes"] == 6 * 1000 + 2 + len("a 1\nb 2")
    [letter] = registry.dead_letters_to_replay(reason="influx_rejected")
    assert letter["lines"] == "a 1\nb 2" and letter["payload"] == b"{}"
    registry.refuse_again(letter["id"], "influx_rejected", "again", ["b 2"])
    assert registry.get_dead_letter(letter["id"])["lines"] == "b 2"
    # size: the oldest go until they take at most 3,500 bytes
    assert registry.prune_dead_letters(max_age=3600, max_bytes=3500) == {"age": 0, "size": 3}
    assert registry.dead_letter_stats()["by_reason"] == {"schema": 3, "influx_rejected": 1}
    # age: everything received more than a minute before "now"
    pruned = registry.prune_dead_letters(max_age=60, max_bytes=10**9, now=time.time() + 120)
    assert pruned == {"age": 4, "size": 0}
    assert registry.dead_letter_stats() == {"by_reason": {}, "bytes": 0, "oldest": None}


def test_workers_starting_at_once_create_the_schema_once(
    tmp_path: Path, database: str | None
) -> None:
    """Several workers open the same fresh store at the same moment: each waits for the
    one migrating (PostgreSQL's advisory lock, SQLite's write lock); none fails."""
    where = target(database, tmp_path, "registry.db")
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            Registry(where).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    db = Database(where)
    try:
        assert db.version("registry") == len(MIGRATIONS)
    finally:
        db.close()
