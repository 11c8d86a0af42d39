"""Shared fixtures: real mosquitto and InfluxDB on free loopback ports, unique names."""

import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.services import InfluxDB, Mosquitto, PostgreSQL

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[Mosquitto]:
    """One anonymous mosquitto shared by the session; use unique gateway ids per test."""
    server = Mosquitto(services_dir / "mosquitto").start()
    yield server
    server.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator:
    """A factory for a private mosquitto (for tests that stop, restart or configure it)."""
    started: list[Mosquitto] = []

    def _make(extra: str = "", anonymous: bool = True, port: int = 0) -> Mosquitto:
        server = Mosquitto(
            tmp_path / f"mosquitto-{len(started)}", port=port, extra=extra, anonymous=anonymous
        )
        started.append(server)
        return server.start()

    yield _make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def influx(services_dir: Path) -> Iterator[InfluxDB]:
    """One InfluxDB 1.x shared by the session; use the ``influx_db`` fixture for a database."""
    server = InfluxDB(services_dir / "influxdb").start()
    yield server
    server.stop()


@pytest.fixture
def influx_db(influx: InfluxDB) -> str:
    """A fresh, empty database name for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    influx.create_database(name)
    return name


@pytest.fixture(scope="session")
def postgres(services_dir: Path) -> Iterator[PostgreSQL]:
    """One PostgreSQL 15 shared by the session; use ``pg_url`` for a database of your own."""
    server = PostgreSQL(services_dir / "postgres").start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgreSQL) -> str:
    """The URL of a fresh, empty PostgreSQL database for this test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def gateway_id() -> str:
    """A gateway id no other test (or earlier run) uses, so topics are unique."""
    return f"gw-t{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:4]}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fails a test that leaves threads running (after giving them 2 s to end)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in leaked:
        thread.join(2)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"
