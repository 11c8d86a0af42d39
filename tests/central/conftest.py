"""Fixtures for the API tests: ``central`` is a Central that is not started, over a real
InfluxDB and a fresh data_dir (a module needing other settings defines its own); these
give a test client and admin / read tokens for it. ``database``
runs a test once over each store: SQLite under data_dir, and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.config import CentralConfig
from central.service import Central
from scripts.services import InfluxDB
from tests.central.alert_helpers import Receiver
from wire.structs import convert


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """``database.url`` for the store under test: None (SQLite files under data_dir) or
    a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP webhook receiver on a free port, recording what it gets."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def central(tmp_path: Path, influx: InfluxDB, influx_db: str) -> Iterator[Central]:
    """A Central (not started) on a fresh database and data_dir, with default settings."""
    doc = {"influx": {"url": influx.url, "database": influx_db}, "data_dir": str(tmp_path / "c")}
    c = Central(convert(doc, CentralConfig))
    yield c
    c.close()


@pytest.fixture
def client(central: Central) -> Iterator[TestClient]:
    with TestClient(create_app(central.config, central)) as c:
        yield c


@pytest.fixture
def admin(central: Central) -> dict[str, str]:
    return {"Authorization": f"Bearer {central.tokens.create('admin', 'duty-officer')[1]}"}


@pytest.fixture
def reader(central: Central) -> dict[str, str]:
    return {"Authorization": f"Bearer {central.tokens.create('read')[1]}"}
