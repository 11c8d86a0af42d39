"""The rules file: the pinned format, errors naming rule and key, ``rules check``,
and reloading (a bad file is refused and the old rules stay in force)."""

import argparse
from pathlib import Path

import pytest

from central.alerts.cli import rules_check
from central.alerts.rules import LevelsRule, StaleRule, ThresholdRule, load_rules
from central.alerts.service import AlertService
from tests.central.alert_helpers import (
    FakeTime,
    Receiver,
    birth,
    config,
    step,
    telemetry,
    write_rules,
)
from wire.configfile import ConfigError

ROOT = Path(__file__).resolve().parents[2]

PINNED = """
rules:
  - name: river-high
    kind: threshold
    match: {profile: "river/*", metric: level_cm}   # globs on gateway, device, site, profile...
    above: 300
    clear_below: 290
    for: 30s
    severity: critical
    annotations: {summary: "{device} at {site}: {value} cm"}
  - name: gateway-offline
    kind: offline
    after: 2m
    severity: warning
  - name: tapping-box-silent
    kind: stale
    match: {profile: "tapping-box/*"}
    after: 30m
    schedule: {days: [mon, tue, wed, thu, fri, sat, sun], hours: "10:00-22:00"}
    severity: warning
"""


def test_the_pinned_format_loads(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path / "rules.yaml", PINNED))
    high, offline, silent = rules.rules
    assert isinstance(high, ThresholdRule)
    assert (high.above, high.clear_below, high.for_) == (300, 290, 30.0)
    assert high.match.profile == "river/*" and high.match.metric == "level_cm"
    assert offline.kind == "offline" and offline.after == 120.0
    assert isinstance(silent, StaleRule) and silent.schedule is not None
    assert silent.schedule.hours == "10:00-22:00" and silent.after == 1800.0


def test_the_example_rules_load() -> None:
    rules = load_rules(ROOT / "deploy" / "rules.example.yaml")
    levels = rules.by_name["river-siaga"]
    assert isinstance(levels, LevelsRule)
    assert levels.bands("sungai-ciliwung-3") == {"waspada": 2.0, "siaga": 2.6, "awas": 3.2}
    assert levels.bands("kali-x") == {"waspada": 2.5, "siaga": 3.0, "awas": 3.5}


def test_the_example_garbage_and_traffic_rules() -> None:
    rules = load_rules(ROOT / "deploy" / "rules.example.yaml")
    full = rules.by_name["bin-full"]
    assert isinstance(full, ThresholdRule)
    assert (full.match.profile, full.match.metric) == ("garbage/*", "fill_pct")
    assert (full.above, full.for_) == (90, 7200.0)
    stuck = rules.by_name["traffic-counter-stuck"]
    assert isinstance(stuck, StaleRule) and stuck.schedule is not None
    assert (stuck.match.profile, stuck.match.metric) == ("traffic/*", "vehicles_moved")
    assert stuck.schedule.hours == "06:00-21:00" and stuck.after == 1800.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  - {name: river-high, kind: threshold, above: 300, clear_below: 310}",
            "rules[0] (river-high).clear_below: must not be higher than above (300)",
        ),
        (
            "  - {name: a, kind: threshold, above: 1}\n"
            "  - {name: b, kind: threshold, above: 1}\n"
            "  - {name: river-high, kind: threshold, above: 300, for: soon}",
            "rules[2] (river-high).for: invalid duration 'soon'",
        ),
        (
            "  - {name: r, kind: threshold, above: 1, annotations: {summary: '{device} {nope}'}}",
            "rules[0] (r).annotations.summary: unknown field {nope}",
        ),
        (
            "  - {name: s, kind: stale, after: 5m, schedule: {hours: '25:00-26:00'}}",
            "rules[0] (s).schedule.hours: hours run from 00:00 to 24:00",
        ),
        (
            "  - {name: s, kind: stale, after: 5m, schedule: {days: [senin]}}",
            "rules[0] (s).schedule.days[0]: Input should be 'mon'",
        ),
        ("  - {name: x, kind: flood}", "rules[0] (x).kind: expected one of threshold, levels"),
        (
            "  - {name: t, kind: threshold, above: 1, colour: red}",
            "rules[0] (t).colour: unknown key",
        ),
        ("  - {name: t, kind: threshold}", "rules[0] (t).above: give exactly one of"),
        (
            "  - {name: l, kind: levels, levels: {waspada: 300, siaga: 250}}",
            "rules[0] (l).levels: levels must rise",
        ),
        (
            "  - {name: l, kind: levels, levels: {a: 1, b: 2}, overrides: {x: {a: 1}}}",
            "rules[0] (l).overrides.x: must give the levels a, b in order",
        ),
        ("  - {name: o, kind: offline, match: {device: d}}", "rules[0] (o).match.device:"),
        (
            "  - {name: d, kind: rate, window: 5m, increase: 1}\n  - {name: d, kind: quality}",
            "rules[1] (d).name: duplicate of rules[0]",
        ),
        ("  - {name: s, kind: stale}", "rules[0] (s).after: required key is missing"),
        (
            "  - {name: t, kind: threshold, above: 1, labels: {severity: x}}",
            "rules[0] (t).labels.severity: is set by pantau itself",
        ),
    ],
)
def test_a_bad_rule_is_named_with_its_key(tmp_path: Path, body: str, expected: str) -> None:
    path = write_rules(tmp_path / "rules.yaml", "rules:\n" + body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert any(p.startswith(f"{path}: {expected}") for p in caught.value.problems), (
        caught.value.problems
    )


def test_bad_yaml_and_bad_shapes(tmp_path: Path) -> None:
    for text, expected in [
        ("rules: [\n", "invalid YAML"),
        ("- a\n", "expected a mapping with a 'rules' list"),
        ("rules: {a: 1}\n", "rules: expected a list"),
        ("rulez: []\n", "rulez: unknown key"),
        ("rules:\n  - just-a-string\n", "rules[0]: expected a mapping"),
    ]:
        path = write_rules(tmp_path / "rules.yaml", text)
        with pytest.raises(ConfigError) as caught:
            load_rules(path)
        assert expected in str(caught.value), (text, caught.value)


def test_rules_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_rules(tmp_path / "good.yaml", PINNED)
    assert rules_check(argparse.Namespace(file=good)) == 0
    assert "ok: river-high (threshold, critical)" in capsys.readouterr().out
    bad = write_rules(tmp_path / "bad.yaml", PINNED.replace("clear_below: 290", "clear_below: x"))
    assert rules_check(argparse.Namespace(file=bad)) == 1
    assert "rules[0] (river-high).clear_below:" in capsys.readouterr().err
    assert rules_check(argparse.Namespace(file=tmp_path / "missing.yaml")) == 1


def test_a_bad_reload_is_refused_and_the_old_rules_stay(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeTime()
    path = write_rules(tmp_path / "rules.yaml", PINNED.replace("for: 30s", "for: 0s"))
    service = AlertService(config(tmp_path, path, receiver.url), now=clock)
    try:
        write_rules(path, PINNED.replace("above: 300", "above: lots"))
        with pytest.raises(ConfigError) as caught:
            service.reload()
        assert "rules[0] (river-high).above:" in str(caught.value)
        assert service.reload_error and service.rules.by_name["river-high"].above == 300  # type: ignore[union-attr]
        service.reload_logged()  # the SIGHUP path: logs, doesn't raise
        service.observe("state", birth("gw-x", clock(), {"river-1": "river/a"}))
        service.observe("telemetry", telemetry("gw-x", clock(), {"level_cm": 301}))
        step(service, clock, 1)
        assert receiver.statuses() == [("firing", "river-high")]  # the old rule still works

        # a good file: the rule changes; an alert of a removed rule resolves
        write_rules(path, "rules:\n  - {name: other, kind: threshold, above: 5}\n")
        assert [r.name for r in service.reload().rules] == ["other"]
        step(service, clock, 1)
        assert receiver.statuses() == [("firing", "river-high"), ("resolved", "river-high")]
    finally:
        service.stop()


def test_a_schedule_that_wraps_midnight_belongs_to_the_day_it_starts() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from central.alerts.schedule import Schedule

    wita = ZoneInfo("Asia/Makassar")
    night = Schedule(days=["fri"], hours="22:00-06:00")
    friday_late = datetime(2026, 11, 27, 23, 0, tzinfo=wita)  # a Friday
    saturday_early = datetime(2026, 11, 28, 5, 59, tzinfo=wita)
    opened = datetime(2026, 11, 27, 22, 0, tzinfo=wita).timestamp()
    assert night.window_start(friday_late.timestamp(), wita) == opened
    assert night.window_start(saturday_early.timestamp(), wita) == opened
    assert night.window_start(saturday_early.replace(hour=6).timestamp(), wita) is None
    assert night.window_start(datetime(2026, 11, 28, 23, 0, tzinfo=wita).timestamp(), wita) is None
    whole_day = Schedule(days=["sat"])
    assert whole_day.window_start(saturday_early.timestamp(), wita) is not None
