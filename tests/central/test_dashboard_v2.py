"""The dashboard's own reads with ``influx.api: v2`` (Flux): sparklines, river trend,
tapping-box sums per day, reading errors and the last receipt, against the local
InfluxDB 2 query server (tests/central/influx_v2_query_server.py; Debian's InfluxDB
is 1.6.7, without a v2 API).

Each equivalence test writes one data set to the real InfluxDB 1.6.7 and reads it
back through the InfluxQL path, then answers the Flux path with the tables InfluxDB 2
computes for the same data and the Flux central sent (``flux_*`` below model Flux's
``range`` / ``aggregateWindow(timeSrc: "_start")`` / ``first`` / ``last`` /
``count`` / ``sort`` for these queries), and checks both paths give the same answer, and the
answer a person expects. The Flux text itself is checked too, hostile names stay
inside their string literals, and the pages show the values under v2."""

import json
import random
import re
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient

import wire
from central.api.app import create_app
from central.config import CentralConfig
from central.dashboard import reads
from central.lineprotocol import Encoder
from central.queries import Latest, Queries, quote_flux
from central.service import Central
from scripts.services import InfluxDB
from tests.central.influx_v2_query_server import (
    Answer,
    Table,
    V2QueryServer,
    annotated_csv,
    json_error,
)
from tests.central.test_queries_v2 import BUCKET, EVIL, ORG, TOKEN, rfc, split_flux
from wire.structs import convert

SAMPLES = Path(__file__).parent / "flux_samples"
FLUXCHECK = Path(__file__).parent / "fluxcheck"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z: not on a whole minute
MINUTE = 60_000
TIME = "dateTime:RFC3339"


@pytest.fixture
def server() -> Iterator[V2QueryServer]:
    s = V2QueryServer(ORG, TOKEN).start()
    yield s
    s.stop()


def v2_config(
    server: V2QueryServer, tmp_path: Path, influx: dict[str, str] | None = None, **extra: Any
) -> CentralConfig:
    section = {"url": server.url, "api": "v2", "org": ORG, "bucket": BUCKET, "token": TOKEN}
    section |= {"timeout": "3s"} | (influx or {})
    return convert({"influx": section, "data_dir": str(tmp_path / "v2"), **extra}, CentralConfig)


def range_start(flux: str) -> int:
    """The ``range(start: ...)`` of a query, in ms."""
    text = flux.split("range(start: ", 1)[1].split(")", maxsplit=1)[0].split(",", maxsplit=1)[0]
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.fixture
def v2(server: V2QueryServer, tmp_path: Path) -> Iterator[Queries]:
    q = Queries(v2_config(server, tmp_path).influx)
    yield q
    q.close()


@pytest.fixture
def v1(influx: InfluxDB, influx_db: str, tmp_path: Path) -> Iterator[Queries]:
    doc = {"influx": {"url": influx.url, "database": influx_db}, "data_dir": str(tmp_path / "v1")}
    q = Queries(convert(doc, CentralConfig).influx)
    yield q
    q.close()


def write_v1(influx: InfluxDB, db: str, lines: list[str]) -> None:
    response = httpx.post(
        f"{influx.url}/write", params={"db": db, "precision": "ms"}, content="\n".join(lines)
    )
    assert response.status_code == 204, response.text


# the annotated CSV the test server writes is InfluxDB's own


def test_the_servers_csv_is_byte_for_byte_what_flux_writes() -> None:
    """flux_samples/two-results.csv is the Flux CSV encoder's expected output for two
    results (flux_samples/README.md names its source); annotated_csv writes the same
    tables identically."""
    sample = (SAMPLES / "two-results.csv").read_bytes().decode()
    columns = [
        ("_start", TIME, True),
        ("_stop", TIME, True),
        ("_time", TIME, False),
        ("_measurement", "string", True),
        ("host", "string", True),
        ("_value", "double", False),
    ]
    span = ["2018-04-17T00:00:00Z", "2018-04-17T00:05:00Z"]
    tables = [
        Table(
            columns,
            [
                [*span, "2018-04-17T00:00:00Z", "cpu", "A", "42"],
                [*span, "2018-04-17T00:00:01Z", "cpu", "A", "43"],
            ],
        ),
        Table(
            columns,
            [
                [*span, "2018-04-17T00:00:00Z", "cpu", "A", "40"],
                [*span, "2018-04-17T00:00:01Z", "cpu", "A", "40.1"],
            ],
            "mean",
        ),
    ]
    assert "\r\n" in sample
    assert annotated_csv(tables) == sample


# what InfluxDB 2 computes for the dashboard's Flux (the parts these queries use)


def num(value: float) -> str:
    """A double as InfluxDB 2 writes it in CSV (shortest form, no trailing .0)."""
    return f"{value:.17g}" if value != int(value) else str(int(value))


Point = tuple[str, str, str, str, int, float]  # gateway, device, site, metric, ms, value


def flux_sparklines(
    points: list[Point], gateway: str, start: int, end: int, every: int
) -> list[Table]:
    """range + filter + group(device, _field) + aggregateWindow(mean, timeSrc: _start)
    + keep(device, _field, _time, _value): one table per (device, metric), each window
    stamped with its start, the first cut to ``start``."""
    windows: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for gw, device, _site, metric, ts, value in points:
        if gw == gateway and start <= ts < end:
            windows[(device, metric)][max(ts - ts % every, start)].append(value)
    columns = [
        ("_field", "string", True),
        ("device", "string", True),
        ("_time", TIME, False),
        ("_value", "double", False),
    ]
    return [
        Table(
            columns,
            [
                [metric, device, rfc(at), num(sum(vs) / len(vs))]
                for at, vs in sorted(windows[(device, metric)].items())
            ],
        )
        for device, metric in sorted(windows)
    ]


def flux_change(
    points: list[Point], gateway: str, device: str, metric: str, since: int
) -> list[Table]:
    """The yields "first", "last" (keep _time, _value) and "count" (keep _value)."""
    mine = sorted(
        (ts, value)
        for gw, dev, _site, m, ts, value in points
        if (gw, dev, m) == (gateway, device, metric) and ts >= since
    )
    if not mine:
        return []
    time_value = [("_time", TIME, False), ("_value", "double", False)]
    return [
        Table(time_value, [[rfc(mine[0][0]), num(mine[0][1])]], "first"),
        Table(time_value, [[rfc(mine[-1][0]), num(mine[-1][1])]], "last"),
        Table([("_value", "long", False)], [[str(len(mine))]], "count"),
    ]


Event = tuple[str, str, str, str, int, dict[str, float]]  # gateway, device, site, kind, ms


def flux_receipts(events: list[Event], since: int, now: int, timezone: str) -> list[Table]:
    """group(gateway, device, _field) + aggregateWindow(every: 1d, location: ...,
    timeSrc: "_start") of count(total) (yield "count") and sum (yield "sum")."""
    zone = ZoneInfo(timezone)
    days: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for gw, device, _site, kind, ts, fields in events:
        if kind != "receipt" or not since <= ts < now:
            continue
        local = datetime.fromtimestamp(ts / 1000, zone)
        midnight = int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
        for field in ("total", "tax"):
            if field in fields:
                days[(gw, device, field)][max(midnight, since)].append(fields[field])
    span = [rfc(since), rfc(now)]
    columns = [
        ("_start", TIME, True),
        ("_stop", TIME, True),
        ("_field", "string", True),
        ("device", "string", True),
        ("gateway", "string", True),
        ("_time", TIME, False),
    ]
    counts = [
        Table(
            [*columns, ("_value", "long", False)],
            [[*span, field, dev, gw, rfc(at), str(len(vs))] for at, vs in sorted(per.items())],
            "count",
        )
        for (gw, dev, field), per in sorted(days.items())
        if field == "total"
    ]
    sums = [
        Table(
            [*columns, ("_value", "double", False)],
            [[*span, field, dev, gw, rfc(at), num(sum(vs))] for at, vs in sorted(per.items())],
            "sum",
        )
        for (gw, dev, field), per in sorted(days.items())
    ]
    return counts + sums


def flux_newest(
    rows: list[tuple[dict[str, str], int, str, str]], by: list[str], result: str = "_result"
) -> list[Table]:
    """last() per series, group(by), sort(_time), last(), keep(by + _time, _value):
    ``rows`` as (tags, ms, value, datatype); one table per group, in key order."""
    newest: dict[tuple[str, ...], tuple[int, str, str]] = {}
    for tags, ts, value, datatype in rows:
        key = tuple(tags[name] for name in by)
        if key not in newest or ts >= newest[key][0]:
            newest[key] = (ts, value, datatype)
    return [
        Table(
            [
                *((name, "string", True) for name in by),
                ("_time", TIME, False),
                ("_value", datatype, False),
            ],
            [[*key, rfc(ts), value]],
            result,
        )
        for key, (ts, value, datatype) in sorted(newest.items())
    ]


def reading_lines(points: list[Point]) -> list[str]:
    return [
        f"readings,device={dev},gateway={gw},site={site} {metric}={value!r} {ts}"
        for gw, dev, site, metric, ts, value in points
    ]


def event_lines(events: list[Event]) -> list[str]:
    return [
        f"events,device={dev},gateway={gw},kind={kind},site={site} "
        + ",".join(f"{k}={v!r}" for k, v in sorted(fields.items()))
        + f" {ts}"
        for gw, dev, site, kind, ts, fields in events
    ]


# sparklines

POINTS: list[Point] = [
    # level-1 moved between sites: two series in InfluxDB, one line on the page
    ("gw-a", "level-1", "bogor", "level_m", T0 + 1_000, 1.25),  # window cut to T0
    ("gw-a", "level-1", "bogor", "level_m", T0 + 30_000, 1.5),
    ("gw-a", "level-1", "bogor-2", "level_m", T0 + 45_000, 2.0),  # next window
    ("gw-a", "level-1", "bogor-2", "level_m", T0 + 50_000, 2.5),
    ("gw-a", "level-1", "bogor", "level_m", T0 + 3 * MINUTE, 3.0),  # a gap of one window
    ("gw-a", "level-1", "bogor", "rain_mm", T0 + 2_000, 0.5),
    ("gw-a", "rain-1", "bogor", "rain_mm", T0 + 61_000, 4.0),
    ("gw-a", "rain-1", "bogor", "rain_mm", T0 + 119_000, 5.0),
    ("gw-a", "rain-1", "bogor", "rain_mm", T0 + 10 * MINUTE, 9.0),  # after the end
    ("gw-a", "rain-1", "bogor", "rain_mm", T0 - 1_000, 9.0),  # before the start
    ("gw-b", "level-1", "ambon", "level_m", T0 + 5_000, 7.0),  # another gateway
]
SPAN = (T0, T0 + 5 * MINUTE)


def test_sparklines_under_v2_equal_the_influxql_ones(
    v1: Queries, v2: Queries, influx: InfluxDB, influx_db: str, server: V2QueryServer
) -> None:
    write_v1(influx, influx_db, reading_lines(POINTS))
    expected = {
        ("level-1", "level_m"): [
            (T0 - 20_000, 1.375),
            (T0 + 40_000, 2.25),
            (T0 + 160_000, 3.0),
        ],
        ("level-1", "rain_mm"): [(T0 - 20_000, 0.5)],
        ("rain-1", "rain_mm"): [(T0 + 40_000, 4.0), (T0 + 100_000, 5.0)],
    }
    assert reads.sparklines(v1, "gw-a", *SPAN, MINUTE) == expected

    server.reply_tables(flux_sparklines(POINTS, "gw-a", *SPAN, MINUTE))
    assert reads.sparklines(v2, "gw-a", *SPAN, MINUTE) == expected
    assert server.errors == []
    (flux,) = server.flux
    assert flux == (
        f'from(bucket: "{BUCKET}")\n'
        "  |> range(start: 2023-11-14T22:13:20.000Z, stop: 2023-11-14T22:18:20.000Z)\n"
        '  |> filter(fn: (r) => r._measurement == "readings" and r.gateway == "gw-a")\n'
        '  |> group(columns: ["device", "_field"])\n'
        '  |> aggregateWindow(every: 60000ms, fn: mean, timeSrc: "_start", createEmpty: false)\n'
        '  |> keep(columns: ["device", "_field", "_time", "_value"])\n'
    )


def test_sparklines_of_a_quiet_gateway_are_empty_under_both(
    v1: Queries, v2: Queries, server: V2QueryServer
) -> None:
    assert reads.sparklines(v1, "gw-none", *SPAN, MINUTE) == {}
    server.reply(Answer(200, "\r\n"))
    assert reads.sparklines(v2, "gw-none", *SPAN, MINUTE) == {}


# river trend


def test_trend_under_v2_equals_the_influxql_one(
    v1: Queries, v2: Queries, influx: InfluxDB, influx_db: str, server: V2QueryServer
) -> None:
    write_v1(influx, influx_db, reading_lines(POINTS))
    since = T0 + 10_000
    cases = [
        (("gw-a", "level-1", "level_m"), 1.5),  # 1.5 (bogor) → 3.0, across both sites
        (("gw-a", "level-1", "rain_mm"), None),  # before `since` only
        (("gw-a", "rain-1", "rain_mm"), 5.0),  # 4.0 → 9.0: later points count too
        (("gw-b", "level-1", "level_m"), None),  # one point: no change
        (("gw-a", "level-9", "level_m"), None),  # nothing
    ]
    for (gateway, device, metric), expected in cases:
        assert reads.change(v1, gateway, device, metric, since) == expected, (device, metric)
        server.reply_tables(flux_change(POINTS, gateway, device, metric, since))
        assert reads.change(v2, gateway, device, metric, since) == expected, (device, metric)
    assert server.errors == []
    flux = server.flux[0]
    assert flux.startswith(f'data =\n  from(bucket: "{BUCKET}")\n')
    assert "  |> range(start: 2023-11-14T22:13:30.000Z, stop: 1d)\n" in flux
    assert (
        '  |> filter(fn: (r) => r._measurement == "readings" and r._field == "level_m" '
        'and r.gateway == "gw-a" and r.device == "level-1")\n'
    ) in flux
    for pick in ("first", "last"):
        assert (
            f'data\n  |> {pick}()\n  |> group()\n  |> sort(columns: ["_time"])\n'
            f'  |> {pick}()\n  |> keep(columns: ["_time", "_value"])\n'
            f'  |> yield(name: "{pick}")\n'
        ) in flux
    assert "data\n  |> count()\n  |> group()\n  |> sum()\n" in flux
    assert 'yield(name: "count")' in flux


# tapping-box sums per day


def _receipt_events(now_ms: int, timezone: str) -> tuple[list[Event], int, int]:
    """Receipts around local midnights of the last days; (events, since, base) with
    ``base`` the local midnight three days ago and ``since`` the one before it."""
    zone = ZoneInfo(timezone)
    today = datetime.fromtimestamp(now_ms / 1000, zone).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    base = int((today - timedelta(days=3)).timestamp() * 1000)
    since = base - 86_400_000
    hour = 3_600_000
    events: list[Event] = [
        # 23:30 and 00:30 local: the same UTC day, two local days
        (
            "gw-r",
            "box-1",
            "ambon",
            "receipt",
            base - hour // 2,
            {"total": 110000.0, "tax": 10000.0},
        ),
        ("gw-r", "box-1", "ambon", "receipt", base + hour // 2, {"total": 55000.0, "tax": 5000.0}),
        ("gw-r", "box-1", "ambon-2", "receipt", base + 2 * hour, {"total": 22000.0, "tax": 2000.0}),
        ("gw-r", "box-1", "ambon", "receipt", base + 3 * hour, {"total": 11000.0}),  # no tax
        ("gw-r", "box-1", "ambon", "receipt", base + 4 * hour, {"tax": 500.0, "bytes": 9.0}),
        ("gw-r", "box-2", "ambon", "receipt", base + 25 * hour, {"total": 33000.0, "tax": 3000.0}),
        ("gw-r", "box-1", "ambon", "pickup", base + hour, {"total": 999.0}),  # not a receipt
        ("gw-r", "box-1", "ambon", "receipt", since - hour, {"total": 1.0, "tax": 1.0}),  # before
    ]
    return events, since, base


@pytest.mark.parametrize("timezone", ["Asia/Jakarta", "Asia/Jayapura"])
def test_receipts_per_local_day_under_v2_equal_the_influxql_ones(
    v1: Queries,
    v2: Queries,
    influx: InfluxDB,
    influx_db: str,
    server: V2QueryServer,
    timezone: str,
) -> None:
    now_ms = int(time.time() * 1000)
    events, since, base = _receipt_events(now_ms, timezone)
    write_v1(influx, influx_db, event_lines(events))
    day = 86_400_000
    expected = [
        reads.Receipts("gw-r", "box-1", base - day, 1, 110000.0, 10000.0),
        reads.Receipts("gw-r", "box-1", base, 3, 88000.0, 7500.0),
        reads.Receipts("gw-r", "box-2", base + day, 1, 33000.0, 3000.0),
    ]
    assert reads.receipts(v1, since, timezone) == expected

    server.reply_tables(flux_receipts(events, since, now_ms, timezone))
    assert reads.receipts(v2, since, timezone, now_ms) == expected
    assert server.errors == []
    (flux,) = server.flux
    offset = {"Asia/Jakarta": 7 * 3600, "Asia/Jayapura": 9 * 3600}[timezone]  # WIB, WIT
    window = (
        f"every: 1d, location: timezone.fixed(offset: {offset}s), "
        'timeSrc: "_start", createEmpty: false'
    )
    assert flux == (
        'import "timezone"\n\n'
        "data =\n"
        f'  from(bucket: "{BUCKET}")\n'
        f"  |> range(start: {datetime.fromtimestamp(since / 1000, UTC):%Y-%m-%dT%H:%M:%S}.000Z)\n"
        '  |> filter(fn: (r) => r._measurement == "events" and r.kind == "receipt" '
        'and (r._field == "total" or r._field == "tax"))\n'
        '  |> group(columns: ["gateway", "device", "_field"])\n'
        'data\n  |> filter(fn: (r) => r._field == "total")\n'
        f"  |> aggregateWindow({window}, fn: count)\n"
        '  |> yield(name: "count")\n'
        f"data\n  |> aggregateWindow({window}, fn: sum)\n"
        '  |> yield(name: "sum")\n'
    )


def test_days_use_the_zones_rules_where_its_offset_changes() -> None:
    week = 7 * 86_400_000
    # Europe/Berlin went to summer time on 2024-03-31
    before = int(datetime(2024, 3, 20, tzinfo=UTC).timestamp() * 1000)
    across = int(datetime(2024, 3, 28, tzinfo=UTC).timestamp() * 1000)
    assert reads.day_location("Europe/Berlin", before, before + week) == (
        "timezone.fixed(offset: 3600s)"
    )
    assert reads.day_location("Europe/Berlin", across, across + week) == (
        'timezone.location(name: "Europe/Berlin")'
    )
    assert reads.day_location("Asia/Makassar", across, across + week) == (
        "timezone.fixed(offset: 28800s)"
    )
    assert reads.day_location("UTC", across, across + week) == "timezone.fixed(offset: 0s)"


def test_a_flux_error_is_a_query_error_naming_influxdbs_message(
    v2: Queries, server: V2QueryServer
) -> None:
    server.reply(json_error(400, "invalid", 'error calling function "location": unknown time zone'))
    with pytest.raises(reads.QueryError, match="unknown time zone"):
        reads.receipts(v2, T0, "Asia/Jakarta", T0 + 86_400_000)
    with pytest.raises(reads.QueryError, match="400"):
        reads.sparklines(v2, "gw-a", *SPAN, MINUTE)
    with pytest.raises(reads.QueryError, match="400"):
        reads.change(v2, "gw-a", "d", "m", T0)


# reading errors and the last receipt

ERRORS = [  # gateway, device, site, metric, ms, error
    ("gw-a", "level-1", "bogor", "level_m", T0 + 1_000, "timeout"),
    ("gw-a", "level-1", "bogor-2", "level_m", T0 + 9_000, 'crc "error"'),  # newest, other site
    ("gw-a", "level-1", "bogor", "level_m", T0 + 5_000, "exception 2"),
    ("gw-a", "rain-1", "bogor", "rain_mm", T0 + 2_000, "no value"),
    ("gw-b", "level-1", "ambon", "level_m", T0 + 99_000, "not this gateway"),
]


def test_reading_errors_under_v2_equal_the_influxql_ones(
    v1: Queries, v2: Queries, influx: InfluxDB, influx_db: str, server: V2QueryServer
) -> None:
    lines = [
        f"reading_errors,device={dev},gateway={gw},metric={metric},site={site} "
        f'error="{error.replace(chr(34), chr(92) + chr(34))}" {ts}'
        for gw, dev, site, metric, ts, error in ERRORS
    ]
    write_v1(influx, influx_db, lines)
    expected = {
        ("level-1", "level_m"): (T0 + 9_000, 'crc "error"'),
        ("rain-1", "rain_mm"): (T0 + 2_000, "no value"),
    }
    assert reads.latest_errors(v1, "gw-a") == expected

    rows = [
        ({"device": dev, "metric": metric}, ts, error, "string")
        for gw, dev, _site, metric, ts, error in ERRORS
        if gw == "gw-a"
    ]
    server.reply_tables(flux_newest(rows, ["device", "metric"]))
    assert reads.latest_errors(v2, "gw-a") == expected
    assert server.errors == []
    (flux,) = server.flux
    assert flux == (
        f'from(bucket: "{BUCKET}")\n'
        "  |> range(start: 0, stop: 1d)\n"
        '  |> filter(fn: (r) => r._measurement == "reading_errors" and r._field == "error" '
        'and r.gateway == "gw-a")\n'
        "  |> last()\n"
        '  |> group(columns: ["device", "metric"])\n'
        '  |> sort(columns: ["_time"])\n'
        "  |> last()\n"
        '  |> keep(columns: ["device", "metric", "_time", "_value"])\n'
    )


def test_last_receipts_under_v2_equal_the_influxql_ones(
    v1: Queries, v2: Queries, influx: InfluxDB, influx_db: str, server: V2QueryServer
) -> None:
    events: list[Event] = [
        ("gw-r", "box-1", "ambon", "receipt", T0 + 1_000, {"bytes": 300.0, "total": 5.0}),
        ("gw-r", "box-1", "ambon-2", "receipt", T0 + 7_000, {"bytes": 280.0}),  # newest
        ("gw-r", "box-1", "ambon", "receipt", T0 + 9_000, {"total": 9.0}),  # no bytes
        ("gw-r", "box-1", "ambon", "pickup", T0 + 20_000, {"bytes": 1.0}),  # not a receipt
        ("gw-s", "box-1", "bogor", "receipt", T0 + 3_000, {"bytes": 100.0}),
    ]
    write_v1(influx, influx_db, event_lines(events))
    expected = {("gw-r", "box-1"): T0 + 7_000, ("gw-s", "box-1"): T0 + 3_000}
    assert reads.last_receipts(v1) == expected

    rows = [
        ({"gateway": gw, "device": dev}, ts, num(fields["bytes"]), "double")
        for gw, dev, _site, kind, ts, fields in events
        if kind == "receipt" and "bytes" in fields
    ]
    server.reply_tables(flux_newest(rows, ["gateway", "device"]))
    assert reads.last_receipts(v2) == expected
    assert server.errors == []
    (flux,) = server.flux
    assert (
        '  |> filter(fn: (r) => r._measurement == "events" and r.kind == "receipt" '
        'and r._field == "bytes")\n'
    ) in flux
    assert '  |> group(columns: ["gateway", "device"])\n' in flux


def test_latest_with_text_under_v2_equals_the_influxql_one(
    v1: Queries, v2: Queries, influx: InfluxDB, influx_db: str, server: V2QueryServer
) -> None:
    readings: list[tuple[str, str, str, int, float | str]] = [  # device, site, metric, ms, value
        ("pump-1", "bogor", "flow_lps", T0 + 1_000, 12.5),
        ("pump-1", "bogor-2", "flow_lps", T0 + 9_000, 13.0),  # newest, other site
        ("pump-1", "bogor", "firmware", T0 + 2_000, "v2.0"),
        ("pump-1", "bogor-2", "firmware", T0 + 8_000, 'v2.<b>1</b> "$x"'),  # newest
        ("pump-1", "bogor", "mode", T0 + 1_000, 3.0),  # then text, newer: the text
        ("pump-1", "bogor", "mode", T0 + 4_000, "auto"),
        ("gate-2", "bogor", "status", T0 + 3_000, "closed"),
    ]
    lines: list[str] = []
    for device, site, metric, ts, value in readings:
        message = convert(
            {
                "gateway": "gw-a",
                "seq": 1,
                "readings": [{"device": device, "metric": metric, "value": value, "ts": ts}],
            },
            wire.Telemetry,
        )
        lines += Encoder().telemetry(message, site=site)
    write_v1(influx, influx_db, lines)
    expected = [
        Latest("gate-2", "status", "closed", T0 + 3_000),
        Latest("pump-1", "firmware", 'v2.<b>1</b> "$x"', T0 + 8_000),
        Latest("pump-1", "flow_lps", 13.0, T0 + 9_000),
        Latest("pump-1", "mode", "auto", T0 + 4_000),
    ]
    assert v1.latest("gw-a", text=True) == expected
    assert [r.metric for r in v1.latest("gw-a")] == ["flow_lps", "mode"]  # numbers only

    def rows(text: bool) -> list[tuple[dict[str, str], int, str, str]]:
        return [
            (
                {"device": device, "_field": metric},
                ts,
                value if isinstance(value, str) else num(value),
                "string" if isinstance(value, str) else "double",
            )
            for device, _site, metric, ts, value in readings
            if isinstance(value, str) == text
        ]

    by = ["device", "_field"]
    server.reply_tables(
        flux_newest(rows(False), by, "numeric") + flux_newest(rows(True), by, "text")
    )
    assert v2.latest("gw-a", text=True) == expected
    assert server.errors == []
    (flux,) = server.flux
    assert v2.flux is not None
    numeric = v2.flux.latest_flux("gw-a", None)
    text = numeric.replace('"readings"', '"readings_text"')
    assert flux == f'{numeric}  |> yield(name: "numeric")\n{text}  |> yield(name: "text")\n'


# every query compiles, by Flux's own checker


def fluxcheck(check: list[str], decode: list[str]) -> tuple[list[bool], list[str | None]]:
    """Flux's own parser and semantic checker (tests/central/fluxcheck): whether each
    script in ``check`` compiles, and the value of each string literal in ``decode``
    (None when Flux does not read it as one string literal)."""
    node = shutil.which("node")
    package = FLUXCHECK / "node_modules" / "@influxdata" / "flux-lsp-browser"
    if node is None or not package.is_dir():
        pytest.fail("Flux's checker is missing: run 'make fluxcheck' (tests/central/fluxcheck)")
    done = subprocess.run(
        [node, "--experimental-wasm-modules", "--no-warnings", str(FLUXCHECK / "validate.mjs")],
        input=json.dumps({"check": check, "decode": decode}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert len(answer["check"]) == len(check) and len(answer["decode"]) == len(decode)
    return answer["check"], answer["decode"]


def test_every_flux_query_central_sends_compiles(v2: Queries) -> None:
    flux = v2.flux
    assert flux is not None
    scripts = {
        "latest": flux.latest_flux("gw", None),
        "latest device": flux.latest_flux("gw", "dev"),
        "latest text": flux.latest_flux("gw", None, text=True),
        "latest text device": flux.latest_flux("gw", "dev", text=True),
        "series": flux.series_flux("gw", "d", "m", start_ms=T0, end_ms=T0 + 1, every_ms=MINUTE),
        "sparklines": reads.sparklines_flux(flux, "gw", *SPAN, MINUTE),
        "change": reads.change_flux(flux, "gw", "d", "m", T0),
        "receipts WIB": reads.receipts_flux(
            flux, T0, reads.day_location("Asia/Jakarta", T0, T0 + 86_400_000)
        ),
        "receipts -05:00": reads.receipts_flux(flux, T0, "timezone.fixed(offset: -18000s)"),
        "receipts Berlin": reads.receipts_flux(
            flux, T0, 'timezone.location(name: "Europe/Berlin")'
        ),
        "latest errors": reads.latest_errors_flux(flux, "gw"),
        "last receipts": reads.last_receipts_flux(flux),
    }
    for index, evil in enumerate(EVIL):
        scripts[f"sparklines evil {index}"] = reads.sparklines_flux(flux, evil, *SPAN, MINUTE)
        scripts[f"change evil {index}"] = reads.change_flux(flux, evil, evil, evil, T0)
        scripts[f"errors evil {index}"] = reads.latest_errors_flux(flux, evil)
        scripts[f"latest text evil {index}"] = flux.latest_flux(evil, evil, text=True)
        scripts[f"series evil {index}"] = flux.series_flux(
            evil, evil, evil, start_ms=T0, end_ms=T0 + 1, every_ms=MINUTE
        )
    # the checker refuses what InfluxDB would: a misspelt parameter, a missing
    # import, a duration where a location belongs, an unterminated string
    wrong = [
        scripts["sparklines"].replace("createEmpty", "createEmtpy"),
        scripts["receipts WIB"].replace('import "timezone"', ""),
        scripts["receipts WIB"].replace("location: timezone.fixed(offset: 25200s)", "location: 7h"),
        scripts["latest errors"].replace('"gw")', '"gw)'),
    ]
    verdicts, _ = fluxcheck([*scripts.values(), *wrong], [])
    refused = [name for name, ok in zip(scripts, verdicts, strict=False) if not ok]
    assert refused == []
    assert verdicts[len(scripts) :] == [False] * len(wrong)


def test_flux_reads_every_quoted_text_back_as_it_was() -> None:
    """quote_flux through Flux's own parser: the literal's value is the text, for the
    hostile names and for random texts of the characters that matter to the scanner
    ($ { } " \\ and control characters; a raw "$" swallows the next backslash)."""
    rng = random.Random(17)
    alphabet = ['"', "\\", "$", "{", "}", "\n", "\r", "\t", "\x00", "\x7f", "x", "é", "✓"]
    texts = [*EVIL, "$", "$$", '$"', "$\\", "${", "\\${", "a$"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))) for _ in range(400)]
    _, decoded = fluxcheck([], [quote_flux(text) for text in texts])
    assert [t for t, d in zip(texts, decoded, strict=True) if t != d] == []
    # what a "$" before an escape does: the checker sees it (the old \${ escaping)
    _, (swallowed, ends) = fluxcheck([], ['"$\\${x}"', '"a$\\"b"'])
    assert swallowed is None and ends is None


# names


@pytest.mark.parametrize("evil", EVIL)
def test_hostile_names_stay_inside_their_string_literals(
    v2: Queries, server: V2QueryServer, evil: str
) -> None:
    server.reply(Answer(200, "\r\n"))
    reads.sparklines(v2, "gw-ok", *SPAN, MINUTE)
    reads.change(v2, "gw-ok", "dev-ok", "metric-ok", T0)
    benign_lines, benign_change = (split_flux(f) for f in server.flux)

    reads.sparklines(v2, evil, *SPAN, MINUTE)
    skeleton, literals = split_flux(server.flux[-1])
    assert skeleton == benign_lines[0]
    assert literals == [evil if v == "gw-ok" else v for v in benign_lines[1]]

    reads.latest_errors(v2, "gw-ok")
    benign_errors = split_flux(server.flux[-1])
    reads.latest_errors(v2, evil)
    skeleton, literals = split_flux(server.flux[-1])
    assert skeleton == benign_errors[0]
    assert literals == [evil if v == "gw-ok" else v for v in benign_errors[1]]

    benign = {"gateway": "gw-ok", "device": "dev-ok", "metric": "metric-ok"}
    for which, ok in benign.items():
        names = benign | {which: evil}
        reads.change(v2, names["gateway"], names["device"], names["metric"], T0)
        skeleton, literals = split_flux(server.flux[-1])
        assert skeleton == benign_change[0]
        assert literals == [evil if v == ok else v for v in benign_change[1]]
    assert server.errors == []


def test_bucket_and_measurement_names_are_literals_too(
    server: V2QueryServer, tmp_path: Path
) -> None:
    bucket, measurement = 'b"${x}\\', 'm") |> drop(columns: ["x"]) //'
    config = v2_config(server, tmp_path, {"bucket": bucket, "measurement": measurement})
    q = Queries(config.influx)
    try:
        server.reply(Answer(200, "\r\n"))
        reads.sparklines(q, "gw", *SPAN, MINUTE)
        reads.change(q, "gw", "d", "m", T0)
        reads.receipts(q, T0, "Asia/Jakarta", T0 + 86_400_000)
        reads.latest_errors(q, "gw")
        reads.last_receipts(q)
        q.latest("gw", text=True)
    finally:
        q.close()
    lines, change, receipts, errors, last, latest = (split_flux(f) for f in server.flux)
    names = [bucket, measurement, "gw", bucket, f"{measurement}_text", "gw"]
    assert [v for v in latest[1] if v in names] == names
    assert lines[1][:2] == [bucket, measurement]
    assert change[1][:2] == [bucket, measurement]
    assert errors[1][:2] == [bucket, f"{measurement}_errors"]
    assert receipts[1][:2] == ["timezone", bucket]  # import "timezone", then the bucket
    assert last[1][0] == bucket
    for flux in (receipts, last):  # events are in "events", as InfluxQL reads them
        assert measurement not in flux[1]


# the pages under v2


def _latest(device: str, metric: str, ts: int, value: float) -> Table:
    columns = [
        ("_time", TIME, False),
        ("_value", "double", False),
        ("_field", "string", True),
        ("device", "string", True),
    ]
    return Table(columns, [[rfc(ts), num(value), metric, device]])


def test_the_pages_show_sparklines_trend_and_sums_under_v2(
    server: V2QueryServer, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    points: list[Point] = [
        ("gw-sungai", "level-1", "bogor", "level_m", now - 300_000, 2.9),
        ("gw-sungai", "level-1", "bogor", "level_m", now - 120_000, 3.0),
        ("gw-sungai", "level-1", "bogor", "level_m", now - 1_000, 3.1),
    ]
    events: list[Event] = [
        ("gw-resto", "box-1", "ambon", "receipt", now - 2000, {"total": 110000.0, "tax": 10000.0}),
        ("gw-resto", "box-1", "ambon", "receipt", now - 1000, {"total": 55000.0, "tax": 5000.0}),
    ]

    def answer(flux: str) -> Answer:
        if 'import "timezone"' in flux:
            tables = flux_receipts(events, range_start(flux), now + 1, "Asia/Jakarta")
        elif 'yield(name: "first")' in flux:
            tables = flux_change(points, "gw-sungai", "level-1", "level_m", range_start(flux))
        elif "fn: mean" in flux:
            tables = flux_sparklines(points, "gw-sungai", range_start(flux), now + 1, MINUTE)
        elif 'r._measurement == "reading_errors"' in flux:
            tables = flux_newest(
                [({"device": "level-1", "metric": "rain_mm"}, now - 500, "timeout", "string")],
                ["device", "metric"],
            )
        elif 'r._field == "bytes"' in flux:
            tables = flux_newest(
                [({"gateway": "gw-resto", "device": "box-1"}, now - 1000, "280", "double")],
                ["gateway", "device"],
            )
        elif 'r.gateway == "gw-sungai"' in flux and 'yield(name: "text")' in flux:
            level = _latest("level-1", "level_m", now - 1_000, 3.1)
            tables = [
                Table(level.columns, level.rows, "numeric"),
                *flux_newest(
                    [
                        (
                            {"device": "level-1", "_field": "firmware"},
                            now - 900,
                            "v<b>7</b>",
                            "string",
                        )
                    ],
                    ["device", "_field"],
                    "text",
                ),
            ]
        elif 'r.gateway == "gw-sungai"' in flux:  # latest, numbers only (river page)
            tables = [_latest("level-1", "level_m", now - 1_000, 3.1)]
        else:
            tables = []
        return Answer(200, annotated_csv(tables) if tables else "\r\n")

    server.reply_with(answer)
    central = Central(v2_config(server, tmp_path, dashboard={"language": "en"}))
    try:
        for gateway, site, device, profile in (
            ("gw-sungai", "bogor", "level-1", "river/radar-level-abcd"),
            ("gw-resto", "ambon", "box-1", "tapping-box/escpos-generic"),
        ):
            central.registry.state(
                wire.State(
                    gateway=gateway,
                    seq=1,
                    status="online",
                    ts=now,
                    site=site,
                    agent_version="test",
                    devices=[wire.DeviceInfo(id=device, profile=profile, driver="x")],
                )
            )
        token = central.tokens.create("read")[1]
        with TestClient(create_app(central.config, central)) as client:
            signed = client.post("/signin", data={"token": token}, follow_redirects=False)
            assert signed.status_code == 303, signed.text

            page = client.get("/gateways/gw-sungai").text
            row = page[page.index('data-metric="level_m"') :].split("</tr>")[0]
            line = row.split('<polyline points="')[1].split('"')[0]
            assert len(line.split()) == 3  # three one-minute means: a line
            assert "3.1" in row and "q-good" in row
            row = page[page.index('data-metric="rain_mm"') :].split("</tr>")[0]
            assert "q-bad" in row and "timeout" in row  # a failed read, with its error
            row = page[page.index('data-metric="firmware"') :].split("</tr>")[0]
            assert '<td class="value text">v&lt;b&gt;7&lt;/b&gt;</td>' in row and "q-good" in row

            river = client.get("/river").text
            row = river[river.index('data-device="level-1"') :].split("</tr>")[0]
            assert "▲ +0.2" in row  # 2.9 → 3.1 in the last 10 minutes

            tapping = client.get("/tapping").text
            row = tapping[tapping.index('data-device="box-1"') :].split("</tr>")[0]
            assert ">2<" in row and "Rp 165.000" in row and "Rp 15.000" in row
            assert re.search(r"<td>\d+ s</td>", row)  # the last receipt, seconds ago
            for text in (page, river, tapping):
                assert "InfluxDB did not answer" not in text
    finally:
        central.close()
    assert server.errors == []
    sent = "\n".join(server.flux)
    for part in ("fn: mean", 'yield(name: "first")', 'import "timezone"', "reading_errors"):
        assert part in sent
