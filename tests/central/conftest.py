"""Fixtures for the API tests: each module defines its own ``central`` (a Central that is
not started); these give a test client and admin / read tokens for it."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.service import Central


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
