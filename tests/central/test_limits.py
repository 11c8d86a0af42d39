"""Identity from the registry and per-gateway limits, checked in central's ingest before
anything is stored or cached (messages handed to Ingest.handle, as paho would)."""

import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.alerts import engine as engine_module
from central.alerts.engine import Engine
from central.alerts.rules import parse_rules
from central.config import CentralConfig
from central.influx import V1Writer
from central.ingest import Ingest
from central.metrics import Metrics
from central.registry import Registry
from wire import Reading
from wire.structs import convert


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    config = convert(
        {
            "influx": {"url": "http://127.0.0.1:9", "database": "unused"},
            "data_dir": str(tmp_path),
            "limits": {
                "gateways": 3,
                "devices_per_gateway": 2,
                "metrics_per_gateway": 3,
                "series_per_gateway": 4,
                "name_length": 16,
            },
        },
        CentralConfig,
    )
    registry = Registry(tmp_path / "registry.db")
    seen: list[tuple[str, object]] = []
    ing = Ingest(
        config,
        registry,
        V1Writer(config.influx),
        Metrics(),
        [lambda kind, message: seen.append((kind, message))],
    )
    ing.seen = seen  # type: ignore[attr-defined]
    yield ing
    registry.close()


def send(ing: Ingest, gateway: str, kind: str, doc: dict) -> None:
    doc = {"v": 1, "gateway": gateway, "seq": 1, **doc}
    ing.handle(f"pantau/v1/{gateway}/{kind}", json.dumps(doc).encode(), mid=1)


def reading(device: str, metric: str, value: object = 1.0, ts: int = 1) -> dict:
    return {"device": device, "metric": metric, "value": value, "ts": ts}


def queued(ing: Ingest) -> list[str]:
    return [line for item in ing._queue for line in item.lines]


def metric(ing: Ingest, name: str) -> float:
    return ing.metrics.registry.get_sample_value(name) or 0.0


def letters(ing: Ingest, reason: str) -> list[dict]:
    return ing.registry.dead_letters(reason=reason)


def test_a_registered_gateways_site_wins_over_its_payload(ingest: Ingest) -> None:
    ingest.registry.create_gateway("gw-a", site="kota-a")
    send(ingest, "gw-a", "telemetry", {"site": "somewhere-else", "readings": [reading("d", "m")]})
    [line] = queued(ingest)
    assert ",site=kota-a " in line and "somewhere" not in line
    assert metric(ingest, "pantau_payload_site_ignored_total") == 1
    assert ingest.seen[0][1].site == "kota-a"  # the alert engine sees the registry's site
    assert ingest.registry.gateway("gw-a")["site"] == "kota-a"
    assert ingest.registry.gateway("gw-a")["site_source"] == "registry"


def test_an_unregistered_gateway_gets_its_first_heard_site_flagged(ingest: Ingest) -> None:
    send(ingest, "gw-new", "telemetry", {"site": "kota-b", "readings": [reading("d", "m")]})
    send(ingest, "gw-new", "telemetry", {"site": "kota-evil", "readings": [reading("d", "m")]})
    row = ingest.registry.gateway("gw-new")
    assert (row["site"], row["site_source"]) == ("kota-b", "first-heard")
    assert all(",site=kota-b " in line for line in queued(ingest))
    assert metric(ingest, "pantau_payload_site_ignored_total") == 1
    ingest.registry.update_gateway("gw-new", {"site": "kota-c"})  # an operator decides
    assert ingest.registry.gateway("gw-new")["site_source"] == "registry"
    assert ingest.registry.site_of("gw-new") == "kota-c"


def test_an_over_long_payload_site_is_not_taken(ingest: Ingest) -> None:
    send(ingest, "gw-long", "telemetry", {"site": "x" * 500, "readings": [reading("d", "m")]})
    assert ingest.registry.gateway("gw-long")["site"] is None
    assert ",site=" not in queued(ingest)[0]


def test_devices_metrics_series_and_name_lengths_are_limited_before_storing(
    ingest: Ingest,
) -> None:
    readings = [
        reading("d1", "a"),
        reading("d1", "b"),
        reading("d2", "a"),
        reading("d3", "a"),  # a third device
        reading("d2", "c"),
        reading("d2", "d"),  # a fourth metric name
        reading("d1", "c"),  # a fifth series
        reading("d1", "m" * 17),  # too long
    ]
    send(ingest, "gw-l", "telemetry", {"readings": readings})
    stored = {
        line.split(",", 2)[1] + "/" + line.split(" ")[1].split("=")[0] for line in queued(ingest)
    }
    assert stored == {"device=d1/a", "device=d1/b", "device=d2/a", "device=d2/c"}
    [letter] = letters(ingest, "limit")
    assert "4 readings beyond the gateway's limits" in letter["detail"]
    assert "d3/a: more than 2 devices" in letter["detail"]
    assert "more than 3 metric names" in letter["detail"]
    assert (
        metric(
            ingest,
            "pantau_readings_refused_total",
        )
        == 0
    )  # labelled, see below
    assert (
        ingest.metrics.registry.get_sample_value(
            "pantau_readings_refused_total", {"reason": "limit"}
        )
        == 4
    )
    observed = ingest.seen[0][1]
    assert len(observed.readings) == 4  # the alert engine never sees the refused names
    # known series keep flowing; a message with nothing left is acknowledged, not queued
    send(ingest, "gw-l", "telemetry", {"readings": [reading("d9", "z")]})
    assert len(ingest._queue) == 1
    assert len(letters(ingest, "limit")) == 2


def test_events_and_births_are_limited_too(ingest: Ingest) -> None:
    event = {"device": "x" * 17, "kind": "receipt", "ts": 1, "data": {"total": 1}}
    send(ingest, "gw-e", "events", event)
    assert (
        not ingest._queue and "device name longer than 16" in letters(ingest, "limit")[0]["detail"]
    )
    devices = [{"id": f"dev{i}", "profile": "p", "driver": "simulated"} for i in range(5)]
    send(ingest, "gw-e", "state", {"status": "online", "ts": 1, "devices": devices})
    assert len(ingest.registry.devices("gw-e")) == 2


def test_gateways_beyond_the_limit_are_dead_lettered(ingest: Ingest) -> None:
    for n in range(4):
        send(ingest, f"gw-{n}", "telemetry", {"readings": [reading("d", "m")]})
    assert ingest.registry.gateway_count == 3
    [letter] = letters(ingest, "limit")
    assert letter["gateway"] == "gw-3" and "more than 3 gateways" in letter["detail"]


def test_declared_types_from_the_birth_message_are_enforced(ingest: Ingest) -> None:
    birth = {
        "status": "online",
        "ts": 1,
        "devices": [
            {"id": "river", "profile": "p", "driver": "modbus", "metrics": {"level": "number"}}
        ],
    }
    send(ingest, "gw-t", "state", birth)
    readings = [reading("river", "level", "high"), reading("river", "level", 3.5, ts=2)]
    send(ingest, "gw-t", "telemetry", {"readings": readings})
    lines = queued(ingest)
    assert lines[0].startswith("reading_errors,") and "wrong type: declared number" in lines[0]
    assert lines[1].startswith("readings,") and "level=3.5" in lines[1]
    sample = ingest.metrics.registry.get_sample_value(
        "pantau_readings_refused_total", {"reason": "wrong_type"}
    )
    assert sample == 1


def test_the_alert_engines_rule_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "RULE_CACHE_MAX", 100)
    rules = parse_rules({"rules": []}, "rules.yaml")
    engine = Engine(rules, now=lambda: 0.0, timezone_of=lambda _: ZoneInfo("Asia/Jakarta"))
    for n in range(1000):
        reading = Reading(device="d", metric=f"metric-{n}", value=n, ts=0)
        engine.readings(f"gw-{n % 7}", None, [reading])
    assert engine._cached == sum(map(len, engine._cache.values())) <= 100


def test_units_are_remembered_when_new_or_changed_and_not_past_the_limits(
    ingest: Ingest,
) -> None:
    def with_unit(device: str, metric: str, unit: str | None) -> dict:
        return {**reading(device, metric), **({"unit": unit} if unit else {})}

    writes: list[list[tuple[str, str, str, str]]] = []
    set_units = ingest.registry.set_units

    def recording(units: list[tuple[str, str, str, str]]) -> None:
        writes.append(list(units))
        set_units(units)

    ingest.registry.set_units = recording  # type: ignore[method-assign,assignment]
    send(
        ingest,
        "gw-u",
        "telemetry",
        {"readings": [with_unit("d1", "level", "m"), with_unit("d1", "rain", None)]},
    )
    send(
        ingest, "gw-u", "telemetry", {"readings": [with_unit("d1", "level", "m")]}
    )  # known: no write
    send(
        ingest,
        "gw-u",
        "telemetry",
        {"readings": [with_unit("d1", "level", "cm"), with_unit("d1", "rain", "mm")]},
    )
    # over the limit (2 devices per gateway): refused, and its unit not remembered
    send(
        ingest,
        "gw-u",
        "telemetry",
        {"readings": [with_unit("d2", "x", "V"), with_unit("d3", "y", "A")]},
    )
    assert writes == [
        [("gw-u", "d1", "level", "m")],
        [("gw-u", "d1", "level", "cm"), ("gw-u", "d1", "rain", "mm")],
        [("gw-u", "d2", "x", "V")],
    ]
    assert ingest.registry.metric_units("gw-u") == {
        ("d1", "level"): "cm",
        ("d1", "rain"): "mm",
        ("d2", "x"): "V",
    }
