"""The snmp driver and the shipped SNMP profiles against a real snmpd (Debian's net-snmp).

Golden cases: a profile, what the agent serves (through snmpd's ``pass`` from a
values file), and the readings expected. Both v2c and v3 authPriv (SHA/AES).
"""

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.cli import main as agent_main
from agent.clock import SystemClock
from agent.drivers import DeviceContext, DriverError, Sample
from agent.drivers.snmp import SnmpConnection, SnmpDriver
from agent.poller import Poller
from agent.profiles import load_profile, parse_profile
from scripts.snmpd import FAKE_IF_INDEX, Snmpd, free_udp_port
from tests.agent.snmp_fixtures import snmpd_fixture, uptime  # noqa: F401
from wire.configfile import ConfigError
from wire.structs import ValidationError, convert, dump, error_location

PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"
UPS = "1.3.6.1.2.1.33.1"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def _run() -> T:
        return await coro

    return asyncio.run(_run())


def v2c(agent: Snmpd) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": agent.port, "version": "2c", "community": agent.community}


def v3(agent: Snmpd) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": agent.port,
        "version": 3,
        "user": agent.user,
        "auth_protocol": "SHA",
        "auth_key": agent.auth_key,
        "priv_protocol": "AES",
        "priv_key": agent.priv_key,
    }


CREDENTIALS = {"v2c": v2c, "v3": v3}


def make(profile: str, connection: dict[str, Any], timeout: float = 2.0) -> SnmpDriver:
    driver_cls, parsed = load_profile(PROFILES, profile)
    assert driver_cls is SnmpDriver
    return SnmpDriver(
        DeviceContext("dev-1", 60.0, timeout, 0), parsed, convert(connection, SnmpConnection)
    )


async def polls(driver: SnmpDriver, steps: list[tuple[Any, float]]) -> list[dict[str, Sample]]:
    """For each (action, at): run action() (e.g. change what the agent serves), then poll."""
    await driver.open()
    try:
        out = []
        for action, at in steps:
            if action is not None:
                action()
            out.append({s.metric: s for s in await driver.read(at)})
        return out
    finally:
        await driver.close()


def values(samples: dict[str, Sample]) -> dict[str, Any]:
    return {m: (s.value if s.quality == "good" else "bad") for m, s in samples.items()}


# --- golden cases: network/snmp-ups -------------------------------------------------------

UPS_ON_BATTERY: dict[str, Any] = {
    "served": {
        f"{UPS}.4.1.0": ("integer", 5),  # upsOutputSource: battery
        f"{UPS}.2.1.0": ("integer", 2),  # upsBatteryStatus: normal
        f"{UPS}.2.3.0": ("integer", 42),  # minutes remaining
        f"{UPS}.2.4.0": ("integer", 87),  # charge %
        f"{UPS}.2.5.0": ("integer", 545),  # 54.5 V in 0.1 V units
        f"{UPS}.2.7.0": ("integer", -100),  # temperature sensor slot empty
        f"{UPS}.3.3.1.3.1": ("gauge", 4294967295),  # input voltage unknown
        # upsOutputPercentLoad not served: noSuchInstance
    },
    "expected": {
        "on_battery": 1,
        "output_source": 5,
        "battery_status": 2,
        "battery_minutes_left": 42,
        "battery_charge_pct": 87,
        "battery_voltage": 54.5,
        "battery_temp_c": "bad",
        "input_voltage": "bad",
        "output_load_pct": "bad",
    },
}

UPS_ON_MAINS: dict[str, Any] = {
    "served": {
        f"{UPS}.4.1.0": ("integer", 3),  # normal
        f"{UPS}.2.1.0": ("integer", 1),  # battery status unknown
        f"{UPS}.2.3.0": ("integer", -1),
        f"{UPS}.2.4.0": ("integer", 100),
        f"{UPS}.2.5.0": ("integer", 1362),
        f"{UPS}.2.7.0": ("integer", 31),
        f"{UPS}.3.3.1.3.1": ("integer", 221),
        f"{UPS}.4.4.1.5.1": ("integer", 37),
    },
    "expected": {
        "on_battery": 0,
        "output_source": 3,
        "battery_status": "bad",
        "battery_minutes_left": "bad",
        "battery_charge_pct": 100,
        "battery_voltage": 136.2,
        "battery_temp_c": 31,
        "input_voltage": 221,
        "output_load_pct": 37,
    },
}


@pytest.mark.parametrize("auth", sorted(CREDENTIALS))
@pytest.mark.parametrize("case", [UPS_ON_BATTERY, UPS_ON_MAINS], ids=["battery", "mains"])
def test_ups_profile_golden(snmpd: Snmpd, auth: str, case: dict[str, Any]) -> None:
    snmpd.set_values({**uptime(1000), **case["served"]})
    driver = make("network/snmp-ups", CREDENTIALS[auth](snmpd))
    [samples] = run(polls(driver, [(None, 1000.0)]))
    assert values(samples) == case["expected"]
    assert samples["battery_voltage"].unit == "V"


def test_sentinels_and_missing_oids_say_why(snmpd: Snmpd) -> None:
    snmpd.set_values({**uptime(1000), **UPS_ON_BATTERY["served"]})
    [samples] = run(polls(make("network/snmp-ups", v2c(snmpd)), [(None, 1.0)]))
    assert "-100 means no reading" in (samples["battery_temp_c"].error or "")
    assert "4294967295 means no reading" in (samples["input_voltage"].error or "")
    assert samples["output_load_pct"].error == f"noSuchInstance at {UPS}.4.4.1.5.1"
    assert samples["battery_voltage"].error is None


# --- golden cases: network/snmp-if ---------------------------------------------------------

WRAP = 2**64


def if_row(ticks: int, hc_in: int, hc_out: int, in_err: int, out_err: int) -> dict[str, Any]:
    i = FAKE_IF_INDEX
    return {
        **uptime(ticks),
        f"{IF}.8.{i}": ("integer", 1),
        f"{IF}.14.{i}": ("counter", in_err),
        f"{IF}.20.{i}": ("counter", out_err),
        f"{IFX}.1.{i}": ("string", "ether1-backhaul"),
        f"{IFX}.6.{i}": ("counter64", hc_in),
        f"{IFX}.10.{i}": ("counter64", hc_out),
        f"{IFX}.15.{i}": ("gauge", 1000),
    }


@pytest.mark.parametrize("auth", sorted(CREDENTIALS))
def test_if_profile_rates_across_wrap_and_reboot(snmpd: Snmpd, auth: str) -> None:
    driver = make("network/snmp-if", {**CREDENTIALS[auth](snmpd), "if_index": FAKE_IF_INDEX})

    def serve(*row: int) -> Any:
        return lambda: snmpd.set_values(if_row(*row))

    first, wrapped, rebooted, after = run(
        polls(
            driver,
            [
                (serve(100_000, WRAP - 4000, 10, 5, 4294967290), 1000.0),
                # 60 s later: in wrapped past 2**64 (7500 octets), out +75000, errors wrapped 2**32
                (serve(106_000, 3500, 75_010, 65, 4), 1060.0),
                # the device rebooted: uptime went back, counters restarted low
                (serve(500, 1000, 2000, 0, 0), 1120.0),
                (serve(6500, 16_000, 2000 + 600_000, 6, 0), 1180.0),
            ],
        )
    )
    rates = ("in_bps", "out_bps", "in_errors_ps", "out_errors_ps")
    assert values(first) == {
        "if_name": "ether1-backhaul",
        "oper_up": 1,
        "speed_mbps": 1000,
        **dict.fromkeys(rates, "bad"),
    }
    assert all("first sample" in (first[m].error or "") for m in rates)
    assert [wrapped[m].value for m in rates] == [1000.0, 10000.0, 1.0, 0.167]
    assert all(rebooted[m].quality == "bad" for m in rates)
    assert "restarted" in (rebooted["in_bps"].error or "")
    assert [after[m].value for m in rates] == [2000.0, 80000.0, 0.1, 0.0]
    assert wrapped["in_bps"].unit == "bit/s"


def test_if_profile_reads_the_hosts_own_loopback_row(snmpd: Snmpd) -> None:
    """IF-MIB served by snmpd from the host's interfaces: ifIndex 1 is Linux's lo."""
    snmpd.set_values(uptime(100))
    driver = make("network/snmp-if", {**v2c(snmpd), "if_index": 1})
    first, second = run(
        polls(driver, [(None, 10.0), (lambda: snmpd.set_values(uptime(200)), 11.0)])
    )
    assert first["if_name"].value == "lo"
    assert first["oper_up"].value == 1
    assert first["in_bps"].quality == "bad"
    assert second["in_bps"].quality == "good"
    assert isinstance(second["in_bps"].value, float) and second["in_bps"].value >= 0


# --- whole-poll failures -------------------------------------------------------------------


def test_no_answer_is_a_driver_error_naming_the_target() -> None:
    port = free_udp_port()  # nothing listens there
    connection = {"host": "127.0.0.1", "port": port, "community": "public", "retries": 0}
    driver = make("network/snmp-ups", connection, timeout=0.5)
    with pytest.raises(DriverError, match=rf"127\.0\.0\.1:{port}: no answer within 0\.45s"):
        run(polls(driver, [(None, 1.0)]))


def test_wrong_community_fails_the_poll_and_every_reading_is_bad(snmpd: Snmpd) -> None:
    driver = make("network/snmp-ups", {**v2c(snmpd), "community": "not-the-community"}, 0.5)
    got: list[tuple[str, int, list[Sample]]] = []
    poller = Poller(driver, lambda dev, ts, samples: got.append((dev, ts, samples)), SystemClock())
    samples = run(poller.poll(1000.0))
    assert [s.metric for s in samples] == [m for m, _unit in driver.metrics()]
    assert {s.quality for s in samples} == {"bad"}
    assert "no answer" in (samples[0].error or "") and "community" in (samples[0].error or "")
    assert "not-the-community" not in (samples[0].error or "")
    assert got[0][:2] == ("dev-1", 1_000_000)
    run(poller._close())


def test_wrong_v3_key_fails_without_showing_the_key(snmpd: Snmpd) -> None:
    snmpd.set_values(uptime(10))
    wrong = "wrong-auth-passphrase"
    driver = make("network/snmp-ups", {**v3(snmpd), "auth_key": wrong}, 1.0)
    with pytest.raises(DriverError) as caught:
        run(polls(driver, [(None, 1.0)]))
    assert wrong not in str(caught.value)
    assert f"127.0.0.1:{snmpd.port}" in str(caught.value)


def test_missing_if_index_is_reported_before_polling(tmp_path: Path, snmpd: Snmpd) -> None:
    text = (PROFILES / "network/snmp-if.yaml").read_text().replace("if_index: 1 ", "# ")
    path = tmp_path / "snmp-if-noindex.yaml"
    path.write_text(text)
    _cls, profile = parse_profile(path)
    driver = SnmpDriver(
        DeviceContext("dev-1", 60.0, 1.0, 0), profile, convert(v2c(snmpd), SnmpConnection)
    )
    with pytest.raises(DriverError, match="if_index"):
        run(driver.open())


# --- config validation ---------------------------------------------------------------------


V3 = {"host": "10.0.0.1", "version": 3, "user": "u"}


@pytest.mark.parametrize(
    ("connection", "key", "message"),
    [
        # rules across keys are reported at the top level; the message names the keys
        ({"host": "10.0.0.1"}, None, "version 2c needs a community"),
        ({"host": "10.0.0.1", "version": 3}, None, "version 3 needs a user"),
        ({**V3, "auth_key": "short"}, "auth_key", "at least 8"),
        ({**V3, "priv_key": "12345678"}, None, "priv_key needs auth_key"),
        ({"host": "10.0.0.1", "community": "c", "user": "u"}, None, "user: only for version 3"),
        ({**V3, "community": "c"}, None, "community: only for version 2c"),
        ({"host": "10.0.0.1", "community": "c", "version": 1}, "version", "'2c' or '3'"),
        ({"host": "http://10.0.0.1", "community": "c"}, "host", "not a host name"),
        ({"host": "10.0.0.1", "community": "c", "port": 70000}, "port", "<= 65535"),
    ],
)
def test_bad_connections_are_refused(
    connection: dict[str, Any], key: str | None, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        convert(connection, SnmpConnection)
    loc, reason = error_location(caught.value)
    assert loc == ((key,) if key else ()) and message in reason, (loc, reason)


def test_version_may_be_a_number_or_any_case() -> None:
    assert convert({"host": "h", "version": "2C", "community": "c"}, SnmpConnection).version == "2c"
    assert convert({**V3, "version": 3}, SnmpConnection).version == "3"


def test_secrets_never_show_in_repr_or_dump() -> None:
    conn = convert(
        {
            "host": "h",
            "version": "3",
            "user": "u",
            "auth_key": "SECRET-AUTH",
            "priv_key": "SECRET-PRIV",
        },
        SnmpConnection,
    )
    shown = repr(conn) + str(conn) + json.dumps(dump(conn))
    assert "SECRET" not in shown
    assert conn.auth_key is not None and conn.auth_key.get_secret_value() == "SECRET-AUTH"
    community = convert({"host": "h", "community": "SECRET-COMM"}, SnmpConnection)
    assert "SECRET" not in repr(community) + json.dumps(dump(community))


def test_get_config_redacts_snmp_secrets(tmp_path: Path) -> None:
    from agent.config import AgentConfig, redacted

    config = convert(
        {
            "gateway": {"id": "gw-test-01", "site": "lab"},
            "devices": [
                {"id": "a", "profile": "network/snmp-if", "connection": {"community": "COMM-X"}},
                {
                    "id": "b",
                    "profile": "network/snmp-if",
                    "connection": {"user": "u", "auth_key": "AUTH-X", "priv_key": "PRIV-X"},
                },
            ],
        },
        AgentConfig,
    )
    shown = json.dumps(redacted(config))
    for secret in ("COMM-X", "AUTH-X", "PRIV-X"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("oid: 1.3.6.1.2.1.33.1.2.5.0", "oid: UPS-MIB::upsBatteryVoltage.0"), "oid"),
        (("one_of: [5]", "one_of: []"), "one_of"),
        (("kind: flag", "kind: boolean"), "kind"),
        (("scale: 0.1", "scale: tenth"), "scale"),
        (("metric: output_source", "metric: on_battery"), "is used twice"),
    ],
)
def test_broken_snmp_profile_names_file_and_field(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    text = (PROFILES / "network/snmp-ups.yaml").read_text()
    assert change[0] in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError) as caught:
        parse_profile(path)
    problems = "\n".join(caught.value.problems)
    assert str(path) in problems and field in problems


# --- the technician's tool -----------------------------------------------------------------


def test_pantau_agent_poll_prints_snmp_readings(
    snmpd: Snmpd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snmpd.set_values({**uptime(1000), **UPS_ON_BATTERY["served"]})
    config = tmp_path / "agent.yaml"
    config.write_text(
        json.dumps(
            {
                "gateway": {"id": "gw-test-01", "site": "lab"},
                "profiles_dir": str(PROFILES),
                "buffer": {"path": str(tmp_path / "buffer.db")},
                "devices": [
                    {
                        "id": "ups-1",
                        "profile": "network/snmp-ups",
                        "timeout": "2s",
                        "connection": v3(snmpd),
                    }
                ],
            }
        )
    )
    assert agent_main(["poll", "-c", str(config), "--once", "--device", "ups-1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_metric = {line["metric"]: line for line in lines}
    assert by_metric["battery_voltage"]["value"] == 54.5
    assert by_metric["on_battery"]["value"] == 1
    assert by_metric["battery_temp_c"]["quality"] == "bad"
    assert {line["device"] for line in lines} == {"ups-1"}
    assert snmpd.priv_key not in json.dumps(lines)
