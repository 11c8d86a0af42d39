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


def _telemetry(readings: list[dict], site: str | None = "kota") -> wire.Telemetry:
    data = {"gateway": "gw-lp", "seq": 1, "site": site, "readings": readings}
    return wire.structs.convert(data, wire.Telemetry)  # validated, as wire.decode would


def test_tricky_device_and_metric_names_round_trip(influx: InfluxDB, influx_db: str) -> None:
    readings = [
        {"device": name, "metric": name, "value": float(i), "ts": 1_700_000_000_000 + i}
        for i, name in enumerate(TRICKY)
    ]
    _write(influx, influx_db, Encoder().telemetry(_telemetry(readings, site=TRICKY[-1])))
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
    assert influx.values('SELECT "note" FROM readings', influx_db) == [[5, value]]


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
    assert influx.values('SELECT "open" FROM readings', influx_db) == [[1, True], [2, False]]
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
    _write(influx, influx_db, Encoder().event(event))
    rows = influx.values('SELECT "items", "note", "paid", "total" FROM events', influx_db)
    assert rows == [[7, "[1,2]", 'Nasi "goreng"\nx2', True, 125000]]


def test_escaping_rules() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("new\nline") == "new line"  # line protocol can't carry it in a tag
    assert quote_string('a"b\\c\nd') == '"a\\"b\\\\c\nd"'
    assert field_value(1) == "1.0"
    assert field_value(float("inf")) is None
    assert field_value(True) == "true"
