"""Line protocol: tricky names and values written to a REAL InfluxDB and read back exactly."""

import httpx
import pytest

import wire
import wire.structs
from central.lineprotocol import Encoder, escape_tag, field_value, quote_string
from scripts.services import InfluxDB

TRICKY = [
    "plain",
    "with space",
    "comma,inside",
    "equals=sign",
    'double"quote',
    "single'quote",
    "back\\slash",
    "two\\\\backslashes",
    "unicode ✓ Jalan Sudirman — 水位",
    "emoji 🌧️",
    "all , = \" ' \\x mixed",
]

# Line protocol (1.x) cannot carry these in a tag or field key exactly; they are
# written so the batch still parses, as close as it allows (see lineprotocol.py).
APPROXIMATED = {
    "back\\ space": "back\\\\ space",
    "back\\,comma": "back\\\\,comma",
    "back\\=equals": "back\\\\=equals",
    "trailing\\": "trailing ",
}


def _write(influx: InfluxDB, db: str, lines: list[str]) -> None:
    body = ("\n".join(lines) + "\n").encode()
    resp = httpx.post(f"{influx.url}/write", params={"db": db, "precision": "ms"}, content=body)
    assert resp.status_code == 204, resp.text


def _telemetry(
    readings: list[dict], site: str | None = "kota", gateway: str = "gw-lp"
) -> wire.Telemetry:
    data = {"gateway": gateway, "seq": 1, "site": site, "readings": readings}
    return wire.structs.convert(data, wire.Telemetry)  # validated, as wire.decode would


def test_tricky_device_and_metric_names_round_trip(influx: InfluxDB, influx_db: str) -> None:
    readings = [
        {"device": name, "metric": name, "value": float(i), "ts": 1_700_000_000_000 + i}
        for i, name in enumerate(TRICKY)
    ]
    message = _telemetry(readings, site="ignored: the registry's site is used")
    _write(influx, influx_db, Encoder().telemetry(message, site=TRICKY[-1]))
    devices = {
        r[1] for r in influx.values('SHOW TAG VALUES FROM readings WITH KEY = "device"', influx_db)
    }
    assert devices == set(TRICKY)
    fields = {r[0] for r in influx.values("SHOW FIELD KEYS FROM readings", influx_db)}
    assert fields == set(TRICKY)
    sites = influx.values('SHOW TAG VALUES FROM readings WITH KEY = "site"', influx_db)
    assert sites == [["site", TRICKY[-1]]]


def test_names_line_protocol_cannot_carry_still_write(influx: InfluxDB, influx_db: str) -> None:
    readings = [
        {"device": name, "metric": "m", "value": 1.0, "ts": i}
        for i, name in enumerate(APPROXIMATED)
    ]
    readings += [{"device": "d", "metric": name, "value": 1.0, "ts": 9} for name in APPROXIMATED]
    _write(influx, influx_db, Encoder().telemetry(_telemetry(readings)))
    devices = influx.values('SHOW TAG VALUES FROM readings WITH KEY = "device"', influx_db)
    assert {r[1] for r in devices} == set(APPROXIMATED.values()) | {"d"}
    fields = {r[0] for r in influx.values("SHOW FIELD KEYS FROM readings", influx_db)}
    assert fields == set(APPROXIMATED.values()) | {"m"}


@pytest.mark.parametrize(
    "value",
    [
        "plain text",
        'quote " inside',
        'back\\slash and \\" both',
        "ends with backslash\\",
        "line one\nline two\r\nthree",
        "tab\there",
        "unicode ✓ 水位 🌧️",
        "a=b, c d",
        "",
    ],
)
def test_string_field_values_round_trip(influx: InfluxDB, influx_db: str, value: str) -> None:
    message = _telemetry([{"device": "d", "metric": "note", "value": value, "ts": 5}])
    _write(influx, influx_db, Encoder().telemetry(message))
    assert influx.values('SELECT "note" FROM readings_text', influx_db) == [[5, value]]


def test_numbers_are_floats_so_int_then_float_never_conflicts(
    influx: InfluxDB, influx_db: str
) -> None:
    enc = Encoder()
    first = _telemetry([{"device": "d", "metric": "level", "value": 3, "ts": 1}])
    second = _telemetry([{"device": "d", "metric": "level", "value": 3.25, "ts": 2}])
    third = _telemetry([{"device": "d", "metric": "level", "value": 10**16, "ts": 3}])
    for message in (first, second, third):
        _write(influx, influx_db, enc.telemetry(message))  # each its own request
    assert influx.values('SHOW FIELD KEYS FROM "readings"', influx_db) == [["level", "float"]]
    assert influx.values('SELECT "level" FROM readings', influx_db) == [
        [1, 3],
        [2, 3.25],
        [3, 10**16],
    ]


def test_booleans_and_bad_readings(influx: InfluxDB, influx_db: str) -> None:
    message = _telemetry(
        [
            {"device": "door", "metric": "open", "value": True, "ts": 1},
            {"device": "door", "metric": "open", "value": False, "ts": 2},
            {
                "device": "pump",
                "metric": "flow",
                "value": None,
                "ts": 3,
                "quality": "bad",
                "error": 'timeout "after" 2s',
            },
            {"device": "pump", "metric": "flow", "value": float("nan"), "ts": 4},
        ]
    )
    _write(influx, influx_db, Encoder().telemetry(message))
    assert influx.values('SELECT "open" FROM readings', influx_db) == [[1, 1], [2, 0]]
    errors = influx.values('SELECT "error", "metric" FROM reading_errors', influx_db)
    assert errors == [[3, 'timeout "after" 2s', "flow"], [4, "no value", "flow"]]


def test_events_keep_their_data(influx: InfluxDB, influx_db: str) -> None:
    event = wire.Event(
        gateway="gw-lp",
        seq=3,
        device="tap-1",
        kind="receipt",
        ts=7,
        data={"total": 125000, "note": 'Nasi "goreng"\nx2', "paid": True, "items": [1, 2]},
    )
    _write(influx, influx_db, Encoder().event(event, site="kota"))
    rows = influx.values('SELECT "paid", "total" FROM events WHERE site = \'kota\'', influx_db)
    assert rows == [[7, 1, 125000]]
    rows = influx.values('SELECT "items", "note" FROM events_text', influx_db)
    assert rows == [[7, "[1,2]", 'Nasi "goreng"\nx2']]


def test_no_gateway_can_make_another_gateways_numbers_refused(
    influx: InfluxDB, influx_db: str
) -> None:
    """Storage isolation: the poisoner's string, bool and event text go where a number
    can never be, so both gateways' numbers are stored, in one shard, in any order."""
    enc = Encoder()
    poison = [
        {"device": "river", "metric": "level_cm", "value": "banjir!", "ts": 1},
        {"device": "river", "metric": "level_cm", "value": True, "ts": 2},
    ]
    good = [
        {"device": "river", "metric": "level_cm", "value": 120 + i, "ts": 3 + i} for i in range(3)
    ]
    bad_event = wire.Event(
        gateway="gw-poison", seq=1, device="tap", kind="receipt", ts=1, data={"total": "lots"}
    )
    good_event = wire.Event(
        gateway="gw-lp", seq=1, device="tap", kind="receipt", ts=2, data={"total": 5000}
    )
    lines = enc.telemetry(_telemetry(poison, gateway="gw-poison")) + enc.event(bad_event)
    lines += enc.telemetry(_telemetry(good)) + enc.event(good_event)
    _write(influx, influx_db, lines)  # one request: InfluxDB would refuse any conflict
    numbers = influx.values("SELECT \"level_cm\" FROM readings WHERE gateway = 'gw-lp'", influx_db)
    assert numbers == [[3, 120], [4, 121], [5, 122]]
    fields = influx.values('SHOW FIELD KEYS FROM "readings"', influx_db)
    assert fields == [["level_cm", "float"]]
    assert influx.values('SHOW FIELD KEYS FROM "readings_text"', influx_db) == [
        ["level_cm", "string"]
    ]
    assert influx.values('SHOW FIELD KEYS FROM "events"', influx_db) == [
        ["seq", "float"],
        ["total", "float"],
    ]
    assert influx.values('SELECT "total" FROM events_text', influx_db) == [[1, "lots"]]


def test_a_value_of_another_type_than_declared_is_a_bad_reading(
    influx: InfluxDB, influx_db: str
) -> None:
    enc = Encoder()
    readings = [
        {"device": "river", "metric": "level_cm", "value": "12", "ts": 1},
        {"device": "river", "metric": "level_cm", "value": 12, "ts": 2},
        {"device": "river", "metric": "pump_on", "value": 1, "ts": 3},
        {"device": "river", "metric": "pump_on", "value": True, "ts": 4},
        {"device": "river", "metric": "label", "value": 7.5, "ts": 5},
        {"device": "other", "metric": "level_cm", "value": "x", "ts": 6},  # undeclared
    ]
    declared = {"river": {"level_cm": "number", "pump_on": "bool", "label": "string"}}
    _write(influx, influx_db, enc.telemetry(_telemetry(readings), declared=declared))
    assert enc.wrong_type == 3
    errors = influx.values('SELECT "error", "metric" FROM reading_errors', influx_db)
    assert errors == [
        [1, "wrong type: declared number, got string", "level_cm"],
        [3, "wrong type: declared bool, got number", "pump_on"],
        [5, "wrong type: declared string, got number", "label"],
    ]
    assert influx.values('SELECT "level_cm", "pump_on" FROM readings', influx_db) == [
        [2, 12, None],
        [4, None, 1],
    ]


def test_escaping_rules() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("new\nline") == "new line"  # line protocol can't carry it in a tag
    assert quote_string('a"b\\c\nd') == '"a\\"b\\\\c\nd"'
    assert field_value(1) == "1.0"
    assert field_value(float("inf")) is None
    assert field_value(True) == "true"
