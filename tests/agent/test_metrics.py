"""The agent's own Prometheus metrics on ``metrics.listen``: a running agent against a
real mosquitto, scraped over HTTP; prometheus-client loaded only when asked for."""

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.services import Mosquitto, free_port
from tests.agent.test_faults import agent_factory, wait_for, write_config
from tests.agent.test_lean import run_python
from tests.central.test_metrics import alert_rule_series
from wire.configfile import ConfigError


@pytest.fixture
def agents() -> Iterator[Callable]:
    yield from agent_factory()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_running_agent_serves_its_counters_on_the_local_port(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], gateway_id: str, agents: Callable
) -> None:
    broker = make_broker()
    port = free_port()
    devices = [
        {"id": "counter-1", "profile": "simulated/counter", "interval": "100ms"},
        {
            "id": "broken-1",
            "profile": "simulated/counter",
            "connection": {"fail": True},
            "interval": "100ms",
        },
    ]
    config = write_config(
        tmp_path / "agent.yaml",
        gateway_id,
        broker.port,
        devices=devices,
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    agent = agents(config)
    url = f"http://127.0.0.1:{port}/metrics"

    def published() -> float:
        try:
            return scrape(url).get(("pantau_agent_published_total", ()), 0.0)
        except OSError:
            return 0.0

    wait_for(lambda: published() >= 5, 20, "readings acknowledged by the broker")
    got = scrape(url)
    assert agent.stop() == 0
    assert got[("pantau_agent_readings_total", ())] >= got[("pantau_agent_published_total", ())]
    assert got[("pantau_agent_mqtt_connected", ())] == 1
    assert got[("pantau_agent_device_up", (("device", "counter-1"),))] == 1
    assert got[("pantau_agent_device_up", (("device", "broken-1"),))] == 0
    assert got[("pantau_agent_device_failures_total", (("device", "broken-1"),))] >= 1
    assert got[("pantau_agent_device_failures_total", (("device", "counter-1"),))] == 0
    assert got[("pantau_agent_buffer_dropped_total", ())] == 0
    assert got[("process_resident_memory_bytes", ())] > 1e6
    assert "metrics on http://127.0.0.1:" in agent.log()
    used = alert_rule_series("pantau-agent")  # the shipped alerting rules use real series
    assert used and used <= {name for name, _ in got}, used


def test_without_metrics_listen_prometheus_client_is_never_imported(tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent.yaml", "gw-lean-1", 1)
    code = (
        "import sys\n"
        "from agent.cli import main\n"
        f"main(['check', '--offline', '-c', {str(config)!r}])\n"
        "import agent.app, agent.buffer\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    assert run_python(code)[-1] == "False"


def test_a_bad_listen_address_is_refused_naming_the_key(tmp_path: Path) -> None:
    from agent.config import load_config

    config = write_config(tmp_path / "agent.yaml", "gw-bad-1", 1, metrics={"listen": "9108"})
    try:
        load_config(config)
    except ConfigError as exc:
        assert "metrics" in str(exc) and "host:port" in str(exc), str(exc)
    else:
        raise AssertionError("metrics.listen: 9108 was accepted")
