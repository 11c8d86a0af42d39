"""Derived values and events (agent/derived.py): expressions checked when the config
loads, device settings named in errors, and the pickup event's window."""

import time
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.derived import Derivation, DerivedSpec, EventSpec, Expression
from agent.devices import build_devices
from agent.drivers import Sample
from tests.agent.test_faults import AgentProcess, Recorder, wait_for, write_config
from wire.configfile import ConfigError
from wire.structs import convert


def test_an_expression_is_arithmetic_over_names_only() -> None:
    assert Expression.parse("(depth_cm - distance_cm) / depth_cm * 100").names() == {
        "depth_cm",
        "distance_cm",
    }
    assert Expression.parse("max(0, min(100, -x + 2.5))").names() == {"x"}
    for bad in ("__import__('os').system('id')", "x.real", "x ** 2", "[x]", "x if y else z", ""):
        with pytest.raises(ValueError):
            Expression.parse(bad)


def fill(**kwargs: Any) -> Derivation:
    spec = DerivedSpec(
        metric="fill_pct",
        expr=Expression.parse("(depth_cm - distance_cm) / depth_cm * 100"),
        min=0,
        max=100,
        unit="%",
    )
    pickup = EventSpec(kind="pickup", metric="fill_pct", drop=40, **kwargs)
    return Derivation([spec], [pickup], {"depth_cm": 100.0})


def poll(derivation: Derivation, distance: float | None, at: float) -> tuple[Any, list[Any]]:
    sample = (
        Sample("distance_cm", distance, "cm")
        if distance is not None
        else Sample("distance_cm", None, "cm", quality="bad", error="distance_cm: no echo")
    )
    samples, events = derivation.apply([sample], at)
    return samples[-1], events


def test_fill_is_clamped_and_a_bad_input_makes_it_bad_naming_the_input() -> None:
    derivation = fill()
    assert poll(derivation, 25.0, 0)[0].value == 75.0
    assert poll(derivation, 130.0, 10)[0].value == 0.0
    assert poll(derivation, -5.0, 20)[0].value == 100.0
    sample, _ = poll(derivation, None, 30)
    assert sample.quality == "bad" and sample.error == "distance_cm: no echo"


def test_pickup_fires_once_per_drop_within_the_window() -> None:
    derivation = fill(within=1800)
    assert poll(derivation, 10.0, 0)[1] == []  # 90 %
    assert poll(derivation, 40.0, 600)[1] == []  # 60 %: a drop of 30 only
    _, events = poll(derivation, 95.0, 1200)  # 5 %: 85 below the 90 of 20 minutes ago
    assert [(e.kind, e.ts, e.data["before"], e.data["after"]) for e in events] == [
        ("pickup", 1_200_000, 90.0, 5.0)
    ]
    assert poll(derivation, 96.0, 1500)[1] == []  # the new level is the reference


def test_a_drop_spread_over_more_than_the_window_is_no_pickup() -> None:
    derivation = fill(within=600)
    poll(derivation, 10.0, 0)  # 90 %
    poll(derivation, 40.0, 900)  # 60 %, and the 90 has left the window
    assert poll(derivation, 75.0, 1800)[1] == []  # 25 %: 35 below 60


def test_without_a_window_the_previous_reading_is_the_reference() -> None:
    derivation = fill()
    poll(derivation, 10.0, 0)
    poll(derivation, 40.0, 10)
    assert poll(derivation, 70.0, 20)[1] == []  # 30 below 60, not 60 below 90
    assert [e.kind for e in poll(derivation, 80.0, 30)[1]] == []
    assert [e.kind for e in poll(derivation, 20.0, 40)[1]] == []  # a rise
    assert [e.kind for e in poll(derivation, 90.0, 50)[1]] == ["pickup"]  # 80 -> 10


def config(settings: dict[str, Any], profile: str = "garbage/ultrasonic-bin-modbus") -> Any:
    device = {
        "id": "bin-pasar-mardika",
        "profile": profile,
        "connection": {"transport": "tcp", "host": "127.0.0.1"},
        "settings": settings,
    }
    return convert(
        {"gateway": {"id": "gw-ambon-01", "site": "s"}, "devices": [device]}, AgentConfig
    )


def test_missing_unknown_and_bad_settings_name_the_device_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        build_devices(config({"depht_cm": 120}))
    text = "\n".join(info.value.problems)
    assert "devices[0].settings.depht_cm: the profile has no such setting" in text
    assert "devices[0].settings.depth_cm: required by the profile" in text
    assert "[device bin-pasar-mardika]" in text
    with pytest.raises(ConfigError, match=r"settings.depth_cm: must be at least 10"):
        build_devices(config({"depth_cm": 5}))
    with pytest.raises(ConfigError, match=r"settings.depth_cm: expected a number"):
        build_devices(config({"depth_cm": "120cm"}))
    (device,) = build_devices(config({"depth_cm": 120}))
    assert device.driver.derive is not None


def test_a_profile_deriving_from_an_unknown_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "bad.yaml").write_text(
        "# test\ndriver: modbus\npoints:\n  - {metric: distance_cm, register: 0}\n"
        "derived:\n  - {metric: fill_pct, expr: (depth_cm - distanse_cm) / depth_cm}\n"
        "events:\n  - {kind: pickup, metric: fil_pct, drop: 40}\n"
    )
    cfg = config({}, profile="garbage/bad")
    cfg.profiles_dir = tmp_path
    with pytest.raises(ConfigError) as info:
        build_devices(cfg)
    text = "\n".join(info.value.problems)
    assert "derived[0].expr: depth_cm, distanse_cm: not a metric of this profile" in text
    assert "events[0].metric: 'fil_pct' is not a metric" in text


def test_a_pickup_reaches_the_events_topic_from_pantau_agent_run(
    no_leaked_threads: None, modbus_server: Any, broker: Any, tmp_path: Path
) -> None:
    """A bin read over Modbus TCP by one ``pantau-agent run``: fill_pct arrives with the
    telemetry, and emptying the bin sends a pickup event on the events topic."""
    server = modbus_server({1: {"holding": {256: [300, 300, 290]}}})  # 30 cm: 70 % full
    gateway = f"gw-bin-{time.time_ns() % 10**9}"
    config = write_config(
        tmp_path / "agent.yaml",
        gateway,
        broker.port,
        devices=[
            {
                "id": "bin-pasar-mardika",
                "profile": "garbage/ultrasonic-bin-modbus",
                "interval": "500ms",
                "settings": {"depth_cm": 100},
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": server.port},
            }
        ],
        log={"level": "INFO"},
    )
    recorder = Recorder(broker.port, gateway, f"rec-{gateway}", persistent=False).start()
    agent = AgentProcess(config)

    def fills() -> list[Any]:
        return [
            r["value"]
            for m in list(recorder.messages["telemetry"])
            for r in m["readings"]
            if r["metric"] == "fill_pct"
        ]

    try:
        wait_for(lambda: 70.0 in fills(), 15, "fill_pct 70 in the telemetry")
        server.set(1, "holding", 256, [950])  # the truck came: 95 cm, 5 %
        wait_for(lambda: bool(recorder.messages["events"]), 15, "the pickup event")
    finally:
        assert agent.stop() == 0, agent.log()
        recorder.stop()
    (event,) = recorder.messages["events"]
    assert (event["device"], event["kind"]) == ("bin-pasar-mardika", "pickup")
    assert event["data"] == {
        "metric": "fill_pct",
        "before": 70.0,
        "after": 5.0,
        "change": 65.0,
    }
