"""Each rule kind, driven by a fake clock, notifying a real HTTP receiver."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.alerts.service import AlertService
from central.registry import Registry
from tests.central.alert_helpers import (
    FakeTime,
    Receiver,
    birth,
    config,
    death,
    step,
    telemetry,
    write_rules,
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry.db")
    yield reg
    reg.close()


def make(
    tmp_path: Path,
    rules: str,
    receiver: Receiver,
    clock: FakeTime,
    registry: Registry | None = None,
) -> AlertService:
    path = write_rules(tmp_path / "rules.yaml", rules)
    return AlertService(config(tmp_path, path, receiver.url), registry, now=clock)


THRESHOLD = """
rules:
  - name: river-high
    kind: threshold
    match: {profile: "river/*", metric: level_cm}
    above: 300
    clear_below: 290
    for: 30s
    severity: critical
    annotations: {summary: "{device} at {site}: {value} cm"}
"""


def test_threshold_fires_after_for_and_resolves_with_hysteresis(
    tmp_path: Path, receiver: Receiver
) -> None:
    clock = FakeTime()
    service = make(tmp_path, THRESHOLD, receiver, clock)
    try:
        service.observe("state", birth("gw-a", clock(), {"river-1": "river/sensor-x"}))

        def level(value: float, after: float = 10) -> None:
            clock.advance(after)
            service.observe("telemetry", telemetry("gw-a", clock(), {"level_cm": value}))
            step(service, clock)

        level(301)
        level(305)
        level(299)  # dips under: the 30 s start again
        level(302)
        level(303, after=20)
        assert receiver.received == []
        step(service, clock, 10)  # 30 s above since 302
        assert receiver.statuses() == [("firing", "river-high")]
        first = receiver.received[0].json
        assert first["alerts"][0]["annotations"]["summary"] == "river-1 at kota-a: 303 cm"
        assert first["alerts"][0]["labels"] == {
            "alertname": "river-high",
            "severity": "critical",
            "gateway": "gw-a",
            "site": "kota-a",
            "device": "river-1",
            "metric": "level_cm",
        }
        for value in (299, 301, 295, 300, 291, 305, 290):  # hovering at the line: no flapping
            level(value)
        assert len(receiver.received) == 1
        level(289.5)
        assert receiver.statuses() == [("firing", "river-high"), ("resolved", "river-high")]
        resolved = receiver.received[1].json["alerts"][0]
        assert resolved["endsAt"] != "0001-01-01T00:00:00Z"
        assert resolved["fingerprint"] == first["alerts"][0]["fingerprint"]
        for value in (291, 299, 300):
            level(value)
        step(service, clock, 60)
        assert len(receiver.received) == 2
        assert [i["status"] for i in service.incidents.search()] == ["resolved"]
    finally:
        service.stop()


def test_threshold_ignores_other_profiles_and_metrics(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeTime()
    service = make(tmp_path, THRESHOLD.replace("for: 30s", "for: 0s"), receiver, clock)
    try:
        service.observe("state", birth("gw-b", clock(), {"box-1": "tapping-box/x", "r": "river/y"}))
        service.observe("telemetry", telemetry("gw-b", clock(), {"level_cm": 999}, device="box-1"))
        service.observe("telemetry", telemetry("gw-b", clock(), {"rain_mm": 999}, device="r"))
        step(service, clock, 1)
        assert receiver.received == []
        service.observe("telemetry", telemetry("gw-b", clock(), {"level_cm": 999}, device="r"))
        step(service, clock, 1)
        assert receiver.statuses() == [("firing", "river-high")]
    finally:
        service.stop()


LEVELS = """
rules:
  - name: river-siaga
    kind: levels
    match: {metric: level_cm}
    levels: {waspada: 250, siaga: 300, awas: 350}
    overrides:
      "river-2": {waspada: 200, siaga: 250, awas: 300}
    severities: {awas: critical}
    hysteresis: 5
    annotations: {summary: "{device}: {level} ({value} cm)"}
"""


def test_levels_escalate_and_deescalate_in_one_incident(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeTime()
    service = make(tmp_path, LEVELS, receiver, clock)
    try:
        for value in (240, 260, 262, 310, 360, 348, 340, 300, 240):
            service.observe("telemetry", telemetry("gw-c", clock(), {"level_cm": value}))
            step(service, clock, 10)
        assert receiver.statuses() == [
            ("firing", "waspada"),
            ("firing", "siaga"),
            ("firing", "awas"),
            ("firing", "siaga"),  # 348 stays awas (hysteresis 5), 340 falls back
            ("resolved", "siaga"),  # 300 stays siaga; 240 < 245 resolves
        ]
        alerts = [r.json["alerts"][0] for r in receiver.received]
        assert len({a["fingerprint"] for a in alerts}) == 1
        assert [a["labels"]["severity"] for a in alerts[:4]] == [
            "warning",
            "warning",
            "critical",
            "warning",
        ]
        assert alerts[2]["annotations"]["summary"] == "river-1: awas (360 cm)"
        incidents = service.incidents.search()
        assert len(incidents) == 1 and incidents[0]["status"] == "resolved"
        events = [e["event"] for e in service.incidents.events(incidents[0]["id"])]
        assert events.count("changed") == 3 and events.count("firing") == 1

        # the per-device override: 260 is siaga at river-2
        service.observe(
            "telemetry", telemetry("gw-c", clock(), {"level_cm": 260}, device="river-2")
        )
        step(service, clock, 1)
        assert receiver.statuses()[-1] == ("firing", "siaga")
    finally:
        service.stop()


STALE = """
rules:
  - name: tapping-box-silent
    kind: stale
    match: {profile: "tapping-box/*"}
    after: 30m
    schedule: {days: [mon, tue, wed, thu, fri, sat, sun], hours: "10:00-22:00"}
    severity: warning
    annotations: {summary: "{device} at {site} silent since {last_seen}"}
"""


@pytest.mark.parametrize("tz", ["WIB", "WITA", "WIT"])
def test_stale_with_schedule_fires_inside_hours_only(
    tmp_path: Path, receiver: Receiver, registry: Registry, tz: str
) -> None:
    site = f"resto-{tz.lower()}"
    registry.create_site(site, tz)
    zone = ZoneInfo({"WIB": "Asia/Jakarta", "WITA": "Asia/Makassar", "WIT": "Asia/Jayapura"}[tz])
    local = datetime(2026, 11, 23, 21, 45, tzinfo=zone)  # a Monday evening, open till 22:00
    clock = FakeTime(local.timestamp())
    service = make(tmp_path, STALE, receiver, clock, registry)
    try:
        service.observe("state", birth("gw-d", clock(), {"box-1": "tapping-box/epson"}, site=site))
        service.observe("telemetry", telemetry("gw-d", clock(), {"receipts": 1}, "box-1", site))
        step(service, clock)

        def at(hour: int, minute: int, day: int = 0) -> None:
            moment = (local + timedelta(days=day)).replace(hour=hour, minute=minute)
            clock.t = moment.timestamp()
            step(service, clock)

        at(22, 20)  # silent 35 min, but closed since 22:00 (in WIB this would be inside)
        at(23, 59)
        at(9, 59, day=1)
        at(10, 29, day=1)  # open since 10:00: 29 min
        assert receiver.received == []
        at(10, 31, day=1)
        assert receiver.statuses() == [("firing", "tapping-box-silent")]
        alert = receiver.received[0].json["alerts"][0]
        assert alert["labels"]["site"] == site and alert["labels"]["device"] == "box-1"
        assert "silent since" in alert["annotations"]["summary"]
        service.observe("telemetry", telemetry("gw-d", clock(), {"receipts": 2}, "box-1", site))
        step(service, clock, 1)
        assert receiver.statuses()[-1] == ("resolved", "tapping-box-silent")
    finally:
        service.stop()


OFFLINE = """
rules:
  - name: gateway-offline
    kind: offline
    after: 2m
    severity: warning
    annotations: {summary: "{gateway} offline: {reason}"}
"""


def test_offline_fires_for_a_registered_never_seen_gateway(
    tmp_path: Path, receiver: Receiver, registry: Registry
) -> None:
    registry.create_gateway("gw-new", site="desa-b")
    clock = FakeTime(float(int(__import__("time").time())))
    service = make(tmp_path, OFFLINE, receiver, clock, registry)
    try:
        step(service, clock)
        step(service, clock, 100)
        assert receiver.received == []
        step(service, clock, 21)
        assert receiver.statuses() == [("firing", "gateway-offline")]
        alert = receiver.received[0].json["alerts"][0]
        assert alert["labels"]["gateway"] == "gw-new" and alert["labels"]["site"] == "desa-b"
        assert alert["annotations"]["summary"] == "gw-new offline: registered but never seen"
        # it speaks at last: resolved at once
        service.observe("telemetry", telemetry("gw-new", clock(), {"x": 1}, site="desa-b"))
        step(service, clock, 1)
        assert receiver.statuses()[-1] == ("resolved", "gateway-offline")
    finally:
        service.stop()


def test_offline_fires_on_death_and_on_silence(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeTime()
    service = make(tmp_path, OFFLINE, receiver, clock)
    try:
        service.observe("state", birth("gw-e", clock(), {}))
        step(service, clock, 1)
        service.observe("state", death("gw-e", clock()))
        step(service, clock)
        assert receiver.statuses() == [("firing", "gateway-offline")]
        assert "said goodbye" in receiver.received[0].json["alerts"][0]["annotations"]["summary"]
        service.observe("state", birth("gw-e", clock(), {}))
        step(service, clock, 1)
        step(service, clock, 119)
        assert receiver.statuses()[-1] == ("resolved", "gateway-offline")
        step(service, clock, 2)  # silent 2 min since the birth
        assert receiver.statuses()[-1] == ("firing", "gateway-offline")
        summary = receiver.received[-1].json["alerts"][0]["annotations"]["summary"]
        assert summary == "gw-e offline: no message for over 2m"
    finally:
        service.stop()


def test_rate_fires_on_a_fast_rise_and_resolves_when_it_levels_off(
    tmp_path: Path, receiver: Receiver
) -> None:
    rules = """
rules:
  - name: river-rising
    kind: rate
    match: {metric: level_cm}
    window: 10m
    increase: 20
    annotations: {summary: "+{change} cm in {window}"}
"""
    clock = FakeTime()
    service = make(tmp_path, rules, receiver, clock)
    try:
        for value in (100, 105, 110, 118):
            service.observe("telemetry", telemetry("gw-f", clock(), {"level_cm": value}))
            step(service, clock, 60)
        assert receiver.received == []
        service.observe("telemetry", telemetry("gw-f", clock(), {"level_cm": 121}))
        step(service, clock)
        assert receiver.statuses() == [("firing", "river-rising")]
        assert receiver.received[0].json["alerts"][0]["annotations"]["summary"] == "+21 cm in 10m"
        for _ in range(11):  # flat for 11 minutes: the rise leaves the window
            step(service, clock, 60)
            service.observe("telemetry", telemetry("gw-f", clock(), {"level_cm": 121}))
        step(service, clock)
        assert receiver.statuses()[-1] == ("resolved", "river-rising")
    finally:
        service.stop()


def test_quality_fires_when_bad_for_after(tmp_path: Path, receiver: Receiver) -> None:
    rules = """
rules:
  - name: sensor-failing
    kind: quality
    after: 1m
    annotations: {summary: "{device}: {error}"}
"""
    clock = FakeTime()
    service = make(tmp_path, rules, receiver, clock)
    try:
        for _ in range(3):
            service.observe("telemetry", telemetry("gw-g", clock(), {"level_cm": 0}, quality="bad"))
            step(service, clock, 30)
        assert receiver.statuses() == [("firing", "sensor-failing")]
        assert (
            receiver.received[0].json["alerts"][0]["annotations"]["summary"] == "river-1: timeout"
        )
        service.observe("telemetry", telemetry("gw-g", clock(), {"level_cm": 5}))
        step(service, clock, 1)
        assert receiver.statuses()[-1] == ("resolved", "sensor-failing")
    finally:
        service.stop()
