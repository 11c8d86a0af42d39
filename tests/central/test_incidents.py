"""Incidents across restarts of central (a fresh AlertService over the same data_dir),
repeat notifications, acknowledgements and silences."""

from pathlib import Path

from central.alerts.service import AlertService
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

RULES = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level_cm}
    above: 300
    clear_below: 290
    severity: critical
  - name: gateway-offline
    kind: offline
    after: 1d
"""


def new_service(
    tmp_path: Path,
    database: str | None,
    receiver: Receiver,
    clock: FakeTime,
    rules: str = RULES,
    **alerts: object,
) -> AlertService:
    path = write_rules(tmp_path / "rules.yaml", rules)
    return AlertService(config(tmp_path, path, receiver.url, database, **alerts), now=clock)


def level(service: AlertService, clock: FakeTime, value: float, advance: float = 5) -> None:
    service.observe("telemetry", telemetry("gw-r", clock(), {"level_cm": value}))
    step(service, clock, advance)


def test_restart_mid_incident_never_fires_twice_and_still_sends_the_resolution(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    first = new_service(tmp_path, database, receiver, clock)
    level(first, clock, 320)
    assert receiver.statuses() == [("firing", "river-high")]
    # central is killed here: nothing is stopped cleanly

    clock.advance(600)
    second = new_service(
        tmp_path, database, receiver, clock, rules=RULES.split("  - name: gateway", maxsplit=1)[0]
    )
    try:
        level(second, clock, 330)  # still high after the restart: no second firing
        level(second, clock, 310)
        step(second, clock, 3600 * 5)  # well past repeat_interval (4h): one repeat only
        assert receiver.statuses() == [("firing", "river-high"), ("firing", "river-high")]
        assert receiver.received[1].headers["X-Pantau-Event"] == "repeat"
        level(second, clock, 280)  # the readings that came while central was down
        assert receiver.statuses()[-1] == ("resolved", "river-high")
        assert len(receiver.received) == 3
        incidents = second.incidents.search()
        assert len(incidents) == 1 and incidents[0]["status"] == "resolved"
    finally:
        second.stop()
        first.stop()


def test_a_notification_waiting_in_the_outbox_survives_the_restart(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    receiver.stop()
    first = new_service(tmp_path, database, receiver, clock)
    level(first, clock, 320)
    assert first.outbox.search()[0]["state"] == "pending"

    receiver.start()
    clock.advance(30)
    second = new_service(tmp_path, database, receiver, clock)
    try:
        step(second, clock, 1)
        assert receiver.statuses() == [("firing", "river-high")]
        level(second, clock, 200)
        assert receiver.statuses() == [("firing", "river-high"), ("resolved", "river-high")]
    finally:
        second.stop()
        first.stop()


def test_an_offline_gateway_that_came_back_while_central_was_down_resolves(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    first = new_service(tmp_path, database, receiver, clock)
    first.observe("state", birth("gw-r", clock(), {}))
    first.observe("state", death("gw-r", clock()))
    step(first, clock)
    assert receiver.statuses() == [("firing", "gateway-offline")]

    clock.advance(3600)
    second = new_service(tmp_path, database, receiver, clock)
    try:
        step(second, clock, 1)
        assert len(receiver.received) == 1  # restored as firing, not fired again
        second.observe("state", birth("gw-r", clock(), {}))  # the retained birth
        step(second, clock, 1)
        assert receiver.statuses() == [
            ("firing", "gateway-offline"),
            ("resolved", "gateway-offline"),
        ]
    finally:
        second.stop()
        first.stop()


def test_an_incident_whose_rule_was_removed_while_down_resolves_at_start(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    first = new_service(tmp_path, database, receiver, clock)
    level(first, clock, 320)
    second = new_service(tmp_path, database, receiver, clock, rules="rules: []\n")
    try:
        step(second, clock, 1)
        assert receiver.statuses() == [("firing", "river-high"), ("resolved", "river-high")]
    finally:
        second.stop()
        first.stop()


def test_repeat_interval_renotifies_until_acknowledged(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    service = new_service(tmp_path, database, receiver, clock, repeat_interval="10m")
    try:
        level(service, clock, 320)
        step(service, clock, 590)
        assert len(receiver.received) == 1
        step(service, clock, 10)
        assert [r.headers["X-Pantau-Event"] for r in receiver.received] == ["firing", "repeat"]
        incident = service.incidents.firing()[0]
        acked = service.incidents.ack(incident["id"], "operator", "team on site", clock())
        assert acked is not None and service.state_of(acked) == "acknowledged"
        for _ in range(4):
            step(service, clock, 600)
        assert len(receiver.received) == 2
        level(service, clock, 100)  # the resolution is still sent
        assert receiver.statuses()[-1] == ("resolved", "river-high")
    finally:
        service.stop()


def test_a_silence_holds_notifications_until_it_ends(
    tmp_path: Path, database: str | None, receiver: Receiver
) -> None:
    clock = FakeTime()
    service = new_service(tmp_path, database, receiver, clock)
    try:
        silence = service.silences.create(
            matchers={"alertname": "river-*", "gateway": "gw-r"},
            starts_at=clock(),
            ends_at=clock() + 3600,
            comment="sensor maintenance",
            created_by="test",
            now=clock(),
        )
        level(service, clock, 320)
        assert receiver.received == []
        [incident] = service.incidents.firing()
        assert service.state_of(incident) == "silenced"
        level(service, clock, 100)  # resolved under the silence: never notified, nothing sent
        level(service, clock, 330)  # fires again, still silenced
        assert receiver.received == []
        step(service, clock, 3600)  # the silence is over: the firing alert is notified
        assert receiver.statuses() == [("firing", "river-high")]
        assert service.silences.search(clock()) == []
        assert service.silences.search(clock(), include_expired=True)[0]["id"] == silence["id"]
    finally:
        service.stop()
