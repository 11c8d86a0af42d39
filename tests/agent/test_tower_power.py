"""The shipped tower power profile (network/tower-power-ups, RFC 1628 UPS-MIB) against a
real snmpd serving a tower site's UPS / rectifier controller, on mains and on battery."""

from typing import Any

import pytest

from scripts.snmpd import Snmpd
from tests.agent.snmp_fixtures import snmpd_fixture, uptime  # noqa: F401
from tests.agent.test_network_snmp import make, polls, run, v2c, values

UPS = "1.3.6.1.2.1.33.1"
PROFILE = "network/tower-power-ups"

ON_MAINS: dict[str, Any] = {
    "served": {
        f"{UPS}.4.1.0": ("integer", 3),  # upsOutputSource: normal (mains through the unit)
        f"{UPS}.2.2.0": ("integer", 0),  # upsSecondsOnBattery
        f"{UPS}.2.1.0": ("integer", 2),  # upsBatteryStatus: normal
        f"{UPS}.2.3.0": ("integer", 480),
        f"{UPS}.2.4.0": ("integer", 100),
        f"{UPS}.2.5.0": ("integer", 545),  # 54.5 V DC (a -48 V plant's float voltage)
        f"{UPS}.2.6.0": ("integer", 12),  # charging at 1.2 A
        f"{UPS}.2.7.0": ("integer", 29),
        f"{UPS}.3.3.1.2.1": ("integer", 500),  # 50.0 Hz
        f"{UPS}.3.3.1.3.1": ("integer", 224),
        f"{UPS}.4.4.1.2.1": ("integer", 230),
        f"{UPS}.4.4.1.5.1": ("integer", 41),
        f"{UPS}.6.1.0": ("gauge", 0),
    },
    "expected": {
        "mains_ok": 1,
        "on_battery": 0,
        "seconds_on_battery": 0,
        "battery_status": 2,
        "battery_minutes_left": 480,
        "battery_charge_pct": 100,
        "battery_voltage": 54.5,
        "battery_current_a": 1.2,
        "battery_temp_c": 29,
        "mains_voltage": 224,
        "mains_frequency_hz": 50.0,
        "output_voltage": 230,
        "output_load_pct": 41,
        "alarms": 0,
    },
}

ON_BATTERY: dict[str, Any] = {
    "served": {
        f"{UPS}.4.1.0": ("integer", 5),  # battery
        f"{UPS}.2.2.0": ("integer", 754),
        f"{UPS}.2.1.0": ("integer", 3),  # low
        f"{UPS}.2.3.0": ("integer", 17),
        f"{UPS}.2.4.0": ("integer", 23),
        f"{UPS}.2.5.0": ("integer", 468),
        f"{UPS}.2.6.0": ("integer", -187),  # discharging at 18.7 A
        f"{UPS}.2.7.0": ("integer", -100),  # sensor slot empty
        f"{UPS}.3.3.1.2.1": ("integer", 0),
        f"{UPS}.3.3.1.3.1": ("integer", 0),  # no mains
        f"{UPS}.4.4.1.2.1": ("integer", 229),
        f"{UPS}.4.4.1.5.1": ("gauge", 4294967295),  # unknown
        f"{UPS}.6.1.0": ("gauge", 2),
    },
    "expected": {
        "mains_ok": 0,
        "on_battery": 1,
        "seconds_on_battery": 754,
        "battery_status": 3,
        "battery_minutes_left": 17,
        "battery_charge_pct": 23,
        "battery_voltage": 46.8,
        "battery_current_a": -18.7,
        "battery_temp_c": "bad",
        "mains_voltage": 0,
        "mains_frequency_hz": 0.0,
        "output_voltage": 229,
        "output_load_pct": "bad",
        "alarms": 2,
    },
}


@pytest.mark.parametrize("case", [ON_MAINS, ON_BATTERY], ids=["mains", "battery"])
def test_tower_power_profile_golden(snmpd: Snmpd, case: dict[str, Any]) -> None:
    snmpd.set_values({**uptime(1000), **case["served"]})
    [samples] = run(polls(make(PROFILE, v2c(snmpd)), [(None, 1000.0)]))
    assert values(samples) == case["expected"]
    assert samples["battery_voltage"].unit == "V"
    assert samples["mains_frequency_hz"].unit == "Hz"


def test_unit_without_an_output_source_is_not_on_mains(snmpd: Snmpd) -> None:
    """upsOutputSource 2 (none: the load is off) is neither mains nor battery."""
    snmpd.set_values({**uptime(1000), f"{UPS}.4.1.0": ("integer", 2)})
    [samples] = run(polls(make(PROFILE, v2c(snmpd)), [(None, 1000.0)]))
    assert samples["mains_ok"].value == 0 and samples["on_battery"].value == 0
    assert samples["battery_voltage"].quality == "bad"  # not served: noSuchInstance
