"""A real snmpd for the SNMP driver tests. Import the fixture into a test module::

from tests.agent.snmp_fixtures import snmpd  # noqa: F401
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.snmpd import SYS_UPTIME, Snmpd


@pytest.fixture(scope="module", name="snmpd")
def snmpd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    """One snmpd per test module; tests set what it serves with ``set_values``."""
    agent = Snmpd(Path(tmp_path_factory.mktemp("snmpd"))).start()
    yield agent
    agent.stop()
    assert agent.proc is not None and agent.proc.poll() is not None


def uptime(ticks: int) -> dict[str, tuple[str, int | str]]:
    return {f"{SYS_UPTIME}.0": ("timeticks", ticks)}
