"""The alert engine's per-series caches (the rules a series' readings drive, with their
alert states; each gateway's offline rules): what must drop them, their bound, and
messages evaluated whole. The engine alone, on a driven clock."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import wire
from central.alerts import engine as engine_module
from central.alerts.engine import Engine, Subject, Transition
from central.alerts.rules import parse_rules
from tests.central.alert_helpers import FakeTime

HIGH = {"name": "high", "kind": "threshold", "above": 10, "clear_below": 8}


def make(clock: FakeTime, *rules: dict[str, Any]) -> Engine:
    return Engine(
        parse_rules({"rules": list(rules)}, "rules.yaml"),
        now=clock,
        timezone_of=lambda _: ZoneInfo("Asia/Jakarta"),
    )


def read(
    engine: Engine,
    clock: FakeTime,
    values: list[tuple[str, Any]],
    gateway: str = "gw-a",
    site: str | None = "kota-a",
    device: str = "river-1",
) -> list[tuple[str, str, str | None]]:
    """One telemetry message as the service hands it over: (change, rule, metric)."""
    readings = [
        wire.Reading(device=device, metric=m, value=v, ts=int(clock() * 1000) - len(values) + i)
        for i, (m, v) in enumerate(values)
    ]
    found = engine.heard(gateway, site)
    engine.readings(gateway, site, readings, found)
    return changes(found)


def changes(transitions: list[Transition]) -> list[tuple[str, str, str | None]]:
    return [(t.change, t.rule, t.subject.metric) for t in transitions]


def rules(*items: dict[str, Any]) -> Any:
    return parse_rules({"rules": list(items)}, "rules.yaml")


def test_a_reload_that_drops_a_series_forgets_its_pending_alert() -> None:
    clock = FakeTime()
    pending = {**HIGH, "for": "60s"}
    engine = make(clock, pending)
    assert read(engine, clock, [("level", 11)]) == []  # pending since now
    assert ("high", Subject("gw-a", "river-1", "level")) in engine.states

    # reloaded to a rule that no longer covers the series: its state is deleted...
    assert engine.set_rules(rules({**pending, "match": {"metric": "flow"}})) == []
    assert ("high", Subject("gw-a", "river-1", "level")) not in engine.states
    clock.advance(61)
    assert read(engine, clock, [("level", 11)]) == []  # ...and the series is left alone

    # ...and back: 'for' starts again from the first reading above, not from before
    engine.set_rules(rules(pending))
    clock.advance(1)
    assert read(engine, clock, [("level", 11)]) == []
    clock.advance(59)
    assert read(engine, clock, [("level", 12)]) == []
    clock.advance(1)
    assert read(engine, clock, [("level", 12)]) == [("firing", "high", "level")]


def test_a_reload_that_keeps_the_rule_keeps_the_firing_alert() -> None:
    clock = FakeTime()
    engine = make(clock, HIGH)
    assert read(engine, clock, [("level", 11)]) == [("firing", "high", "level")]
    assert engine.set_rules(rules({**HIGH, "severity": "critical"})) == []
    assert read(engine, clock, [("level", 12)]) == []  # still firing: not again
    assert read(engine, clock, [("level", 7)]) == [("resolved", "high", "level")]


def test_a_birth_or_the_registry_changing_a_profile_brings_a_device_under_its_rules() -> None:
    clock = FakeTime()
    engine = make(clock, {**HIGH, "match": {"profile": "river/*"}})
    engine.state("gw-a", "kota-a", True, [("river-1", "network/ups")])
    assert read(engine, clock, [("level", 11)]) == []  # cached: no rule for this series
    engine.state("gw-a", "kota-a", True, [("river-1", "river/radar")])
    assert read(engine, clock, [("level", 11)]) == [("firing", "high", "level")]

    assert read(engine, clock, [("level", 11)], device="river-2") == []  # no profile known
    engine.inventory([], [("gw-a", "river-2", "river/radar")])  # the registry knows it
    assert read(engine, clock, [("level", 11)], device="river-2") == [("firing", "high", "level")]

    # another gateway's birth or inventory leaves this gateway's cached rules alone
    assert read(engine, clock, [("level", 11)], gateway="gw-b") == []
    engine.state("gw-b", "kota-a", True, [("river-1", "river/radar")])
    engine.inventory([{"id": "gw-c", "site": "kota-c"}], [("gw-c", "river-1", "river/radar")])
    assert "gw-a" in engine._cache and "gw-b" not in engine._cache
    assert engine._cached == sum(map(len, engine._cache.values())) == 1
    assert read(engine, clock, [("level", 11)], gateway="gw-b") == [("firing", "high", "level")]


def test_a_gateway_moved_to_another_site_comes_under_that_sites_rules() -> None:
    clock = FakeTime()
    engine = make(
        clock,
        {**HIGH, "match": {"site": "kota-b"}},
        {"name": "offline-b", "kind": "offline", "after": "60s", "match": {"site": "kota-b"}},
    )
    assert read(engine, clock, [("level", 11)], site="kota-a") == []
    assert read(engine, clock, [("level", 11)], site="kota-b") == [("firing", "high", "level")]

    clock.advance(61)
    assert changes(engine.tick()) == [("firing", "offline-b", None)]
    assert read(engine, clock, [("level", 12)], site="kota-b") == [("resolved", "offline-b", None)]


def test_a_message_is_evaluated_in_order_with_every_transition_it_causes() -> None:
    clock = FakeTime()
    engine = make(
        clock,
        {"name": "offline", "kind": "offline", "after": "60s"},
        {**HIGH, "clear_below": None},
        {"name": "levels", "kind": "levels", "levels": {"waspada": 10, "siaga": 20}},
    )
    clock.advance(61)
    assert changes(engine.tick()) == []  # not heard of yet: not offline
    read(engine, clock, [("level", 1)])
    clock.advance(61)
    assert changes(engine.tick()) == [("firing", "offline", None)]
    found = read(engine, clock, [("level", 11), ("level", 5), ("flow", 21), ("level", 12)])
    assert found == [
        ("resolved", "offline", None),  # heard: first
        ("firing", "high", "level"),
        ("firing", "levels", "level"),
        ("resolved", "high", "level"),
        ("resolved", "levels", "level"),
        ("firing", "high", "flow"),
        ("firing", "levels", "flow"),
        ("firing", "high", "level"),
        ("firing", "levels", "level"),
    ]


def test_readings_that_drive_no_rule_leave_no_alert_state() -> None:
    clock = FakeTime()
    engine = make(clock, HIGH)
    now = int(clock() * 1000)
    old = now - 3600_000  # a backlog: older than max_reading_age

    def reading(metric: str, value: Any, ts: int = now, **more: Any) -> wire.Reading:
        return wire.Reading(device="d", metric=metric, value=value, ts=ts, **more)

    found = engine.readings(
        "gw-a",
        "kota-a",
        [
            reading("text", "open"),
            reading("bad", None, quality="bad", error="timeout"),
            reading("old", 50, ts=old),
            reading("nan", float("nan")),
        ],
    )
    assert found == [] and engine.states == {}
    assert engine.readings("gw-a", None, [reading("old", True)]) == []  # True is 1
    assert list(engine.states) == [("high", Subject("gw-a", "d", "old"))]


def test_the_rule_cache_is_bounded_and_keeps_alerts_across_a_clear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "RULE_CACHE_MAX", 100)
    clock = FakeTime()
    engine = make(clock, {**HIGH, "match": {"metric": "m-*"}})
    assert read(engine, clock, [("m-0", 11)]) == [("firing", "high", "m-0")]
    for n in range(1, 1000):
        assert read(engine, clock, [(f"m-{n}", 1)]) == []
        assert engine._cached == sum(map(len, engine._cache.values())) <= 100
    assert read(engine, clock, [("m-0", 12)]) == []  # still firing, found again
    assert read(engine, clock, [("m-0", 5)]) == [("resolved", "high", "m-0")]
    assert read(engine, clock, [("m-0", 11)]) == [("firing", "high", "m-0")]


def test_rate_compares_with_the_lowest_and_highest_value_still_in_the_window() -> None:
    clock = FakeTime()
    rise = {
        "name": "rise",
        "kind": "rate",
        "window": "30s",
        "increase": 3,
        "match": {"metric": "up"},
    }
    fall = {
        "name": "fall",
        "kind": "rate",
        "window": "30s",
        "decrease": 3,
        "match": {"metric": "down"},
    }
    engine = make(clock, rise, fall)
    found = []
    for after, value in [(0, 1.0), (10, 2.0), (10, 3.5), (15, 4.5), (10, 5.5), (5, 7.0)]:
        clock.advance(after)
        found.append(read(engine, clock, [("up", value), ("down", 10 - value)]))
    # at +35 s the 1.0 (and 9.0) of +0 s have left the window: 4.5 - 2.0 is no rise of 3;
    # at +50 s, 7.0 - 3.5 is (the 2.0 of +10 s has left as well)
    assert found == [[], [], [], [], [], [("firing", "rise", "up"), ("firing", "fall", "down")]]
    clock.advance(31)  # nothing new: the window empties, the alerts resolve
    assert sorted(changes(engine.tick())) == [
        ("resolved", "fall", "down"),
        ("resolved", "rise", "up"),
    ]


def test_a_stale_schedule_opens_in_each_sites_own_timezone_within_one_tick() -> None:
    zones = {"kota-wib": ZoneInfo("Asia/Jakarta"), "kota-wit": ZoneInfo("Asia/Jayapura")}
    clock = FakeTime(datetime(2026, 12, 4, 7, 0, tzinfo=zones["kota-wib"]).timestamp())
    silent = {
        "name": "silent",
        "kind": "stale",
        "after": "10m",
        "schedule": {"hours": "08:00-20:00"},
    }
    engine = Engine(rules(silent), now=clock, timezone_of=lambda site: zones[site or "kota-wib"])
    for gateway, site in (("gw-wib", "kota-wib"), ("gw-wit", "kota-wit")):
        engine.state(gateway, site, True, [("box-1", "tapping-box/x")])
    clock.advance(30 * 60)  # 07:30 WIB: closed; 09:30 WIT: open since 08:00
    assert [(t.change, t.subject.gateway) for t in engine.tick()] == [("firing", "gw-wit")]
    clock.advance(60 * 60)  # 08:30 WIB: open for 30 min
    assert [(t.change, t.subject.gateway) for t in engine.tick()] == [("firing", "gw-wib")]
