"""Reading back through InfluxDB 2's query API (Flux), against a local server that
speaks ``POST /api/v2/query`` and answers annotated CSV (there is no InfluxDB 2 on
this machine: Debian ships 1.6.7). The server checks token, org, JSON body and CSV
dialect; each test says what InfluxDB would have computed and checks both the
answer central gives and the Flux it sent."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.config import CentralConfig
from central.queries import quote_flux
from central.service import Central
from tests.central.influx_v2_query_server import (
    Answer,
    Table,
    V2QueryServer,
    error_csv,
    json_error,
)
from wire.structs import convert

ORG, TOKEN, BUCKET = "diskominfo-bogor", "tok-Secret-4242", "pantau"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def rfc(ms: int) -> str:
    """A time as InfluxDB 2 writes it in CSV: RFC 3339, trailing zeros cut."""
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".") + "Z"


def config(tmp_path: Path, url: str, **influx: str) -> CentralConfig:
    section = {"url": url, "api": "v2", "org": ORG, "bucket": BUCKET, "token": TOKEN}
    return convert(
        {"influx": section | {"timeout": "3s"} | influx, "data_dir": str(tmp_path)}, CentralConfig
    )


@pytest.fixture
def server() -> Iterator[V2QueryServer]:
    s = V2QueryServer(ORG, TOKEN).start()
    yield s
    s.stop()


@pytest.fixture
def central(tmp_path: Path, server: V2QueryServer) -> Iterator[Central]:
    c = Central(config(tmp_path, server.url))
    yield c
    c.close()


# Flux string literals, decoded as Flux's scanner reads them (independently of
# quote_flux): libflux/flux-core/src/scanner/scanner.rl in influxdata/flux —
#   escaped_char = "\\" ( "n" | "r" | "t" | "\\" | '"' | "${" );
#   dollar_value = "$" ( any - [{"] );      a "$" and the character after it, as one
#   string_lit = '"' ( unicode_value | byte_value | dollar_value )* "$"? '"';
# (test_dashboard_v2.py also checks quote_flux with Flux's own parser)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


def split_flux(text: str) -> tuple[str, list[str]]:
    """The query with every string literal replaced by ``"…"``, and the literals'
    values. Fails on an unterminated literal, an unknown escape, or a ``${`` that
    would interpolate an expression into a literal. A ``$`` takes the character
    after it along, as Flux's scanner does (so ``$\"`` ends the literal)."""
    skeleton: list[str] = []
    literals: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != '"':
            skeleton.append(text[i])
            i += 1
            continue
        i += 1
        value: list[str] = []
        while True:
            assert i < len(text), f"unterminated string literal in {text!r}"
            char = text[i]
            if char == '"':
                i += 1
                break
            if char == "\\":
                escape = text[i + 1 : i + 2]
                if escape in _ESCAPES:
                    value.append(_ESCAPES[escape])
                    i += 2
                elif escape == "$" and text[i + 2 : i + 3] == "{":
                    value.append("${")
                    i += 3
                elif escape == "x":
                    byte = int(text[i + 2 : i + 4], 16)
                    assert byte < 0x80, "only single-byte \\x escapes expected"
                    value.append(chr(byte))
                    i += 4
                else:
                    raise AssertionError(f"invalid escape \\{escape} in {text!r}")
                continue
            if char == "$":
                after = text[i + 1 : i + 2]
                assert after != "{", f"interpolation inside a literal: {text!r}"
                if after == '"':  # a "$" right before the closing quote
                    value.append(char)
                    i += 1
                else:  # dollar_value: taken with the next character, whatever it is
                    value.append(text[i : i + 2])
                    i += 2
                continue
            value.append(char)
            i += 1
        literals.append("".join(value))
        skeleton.append('"…"')
    return "".join(skeleton), literals


def test_quote_flux_round_trips_any_text() -> None:
    rng = random.Random(6)
    alphabet = ['"', "\\", "$", "{", "}", "\n", "\r", "\t", "\x00", "\x7f", "|", ">", "a", "é", "✓"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        skeleton, literals = split_flux(f"x == {quote_flux(text)} and y")
        assert skeleton == 'x == "…" and y'
        assert literals == [text]


# answers shaped as InfluxDB 2 writes them


def _latest_table(value_type: str, time_ms: int, value: str, field: str, device: str) -> Table:
    # what `keep(columns: ["device", "_field", "_value", "_time"])` leaves, in storage order
    columns = [
        ("_time", "dateTime:RFC3339", False),
        ("_value", value_type, False),
        ("_field", "string", True),
        ("device", "string", True),
    ]
    return Table(columns, [[rfc(time_ms), value, field, device]])


SPAN = (T0, T0 + 120_000)
WINDOW = [("_start", "dateTime:RFC3339", True), ("_stop", "dateTime:RFC3339", True)]
# (window start as aggregateWindow stamps it: the first cut to the range start), stats
BUCKETS = [
    (T0, "20", "0.5", "39.5", "40"),
    (T0 + 40_000, "70", "40.5", "99.5", "60"),
    (T0 + 100_000, "110", "100.5", "119.5", "20"),
]


def _series_tables(buckets: list[tuple[int, str, str, str, str]]) -> list[Table]:
    span = [rfc(SPAN[0]), rfc(SPAN[1])]
    time_value = [("_time", "dateTime:RFC3339", False), ("_value", "double", False)]
    # min and max are selectors: the chosen row keeps its other columns
    selected = [
        ("_field", "string", False),
        ("_measurement", "string", False),
        ("device", "string", False),
        ("gateway", "string", False),
        ("site", "string", False),
    ]
    tags = ["level", "readings", "level-1", "gw-r", "kota-bogor"]
    return [
        Table(WINDOW + time_value, [[*span, rfc(b[0]), b[1]] for b in buckets], "mean"),
        Table(
            WINDOW + time_value + selected,
            [[*span, rfc(b[0]), b[2], *tags] for b in buckets],
            "min",
        ),
        Table(
            WINDOW + time_value + selected,
            [[*span, rfc(b[0]), b[3], *tags] for b in buckets],
            "max",
        ),
        Table(
            [*WINDOW, ("_time", "dateTime:RFC3339", False), ("_value", "long", False)],
            [[*span, rfc(b[0]), b[4]] for b in buckets],
            "count",
        ),
    ]


SERIES_PARAMS = {
    "gateway": "gw-r",
    "device": "level-1",
    "metric": "level",
    "start": "2023-11-14T22:13:20Z",  # T0
    "end": "2023-11-14T22:15:20Z",  # T0 + 120 s
    "every": "1m",
}


def test_latest_parses_influxdb2_tables_into_the_v1_shape(
    client: TestClient, server: V2QueryServer, reader: dict[str, str]
) -> None:
    server.reply_tables(
        [
            _latest_table("double", T0 + 5000, "3", "rain", "rain-1"),
            _latest_table("boolean", T0 + 5000, "true", "ok", "rain-1"),
            _latest_table("double", T0 + 119_000, "119.5", "level", "level-1"),
        ]
    )
    resp = client.get("/api/v1/readings/latest?gateway=gw-r", headers=reader)
    assert resp.status_code == 200, resp.text
    rows = resp.json()
    assert [(r["device"], r["metric"], r["value"], r["ts"]) for r in rows] == [
        ("level-1", "level", 119.5, T0 + 119_000),
        ("rain-1", "ok", True, T0 + 5000),
        ("rain-1", "rain", 3.0, T0 + 5000),
    ]
    assert rows[0]["time"] == "2023-11-14T22:15:19Z"
    assert server.errors == []

    (flux,) = server.flux
    assert f'from(bucket: "{BUCKET}")' in flux
    assert "range(start: 0" in flux
    assert 'r._measurement == "readings"' in flux
    assert 'r.gateway == "gw-r"' in flux
    assert "r.device" not in flux
    assert "last()" in flux
    assert 'group(columns: ["device", "_field"])' in flux

    client.get("/api/v1/readings/latest?gateway=gw-r&device=rain-1", headers=reader)
    assert 'r.device == "rain-1"' in server.flux[-1]


def test_latest_reads_the_text_readings_in_the_same_query(
    client: TestClient, central: Central, server: V2QueryServer, reader: dict[str, str]
) -> None:
    def table(value_type: str, ms: int, value: str, field: str, result: str) -> Table:
        one = _latest_table(value_type, ms, value, field, "pump-1")
        return Table(one.columns, one.rows, result)

    server.reply_tables(
        [
            table("double", T0, "12.5", "flow_lps", "numeric"),
            table("double", T0, "3", "mode", "numeric"),
            table("double", T0, "0", "alarm", "numeric"),
            table("string", T0 + 1000, "v2.<b>1</b>", "firmware", "text"),
            table("string", T0 + 2000, "1.5", "state", "text"),
            table("string", T0 + 5000, "auto", "mode", "text"),  # newer than the number
            table("string", T0, "none", "alarm", "text"),  # as new as the number
        ]
    )
    resp = client.get("/api/v1/readings/latest?gateway=gw-t", headers=reader)
    assert resp.status_code == 200, resp.text
    assert [(r["device"], r["metric"], r["value"], r["ts"]) for r in resp.json()] == [
        ("pump-1", "alarm", 0.0, T0),
        ("pump-1", "firmware", "v2.<b>1</b>", T0 + 1000),
        ("pump-1", "flow_lps", 12.5, T0),
        ("pump-1", "mode", "auto", T0 + 5000),
        ("pump-1", "state", "1.5", T0 + 2000),
    ]
    assert server.errors == []
    (flux,) = server.flux  # one query, two results
    numeric, text = flux.split('  |> yield(name: "numeric")\n')
    assert text.endswith('  |> yield(name: "text")\n')
    assert central.queries.flux is not None
    assert numeric == central.queries.flux.latest_flux("gw-t", None)  # as without text
    assert 'r._measurement == "readings_text" and r.gateway == "gw-t")' in text
    assert 'group(columns: ["device", "_field"])' in text and "last()" in text

    client.get("/api/v1/readings/latest?gateway=gw-t&device=pump-1", headers=reader)
    assert server.flux[-1].count('r.device == "pump-1"') == 2


def test_a_text_result_that_is_not_a_string_is_an_error(
    client: TestClient, server: V2QueryServer, reader: dict[str, str]
) -> None:
    table = _latest_table("double", T0, "3", "firmware", "pump-1")
    server.reply_tables([Table(table.columns, table.rows, "text")])
    resp = client.get("/api/v1/readings/latest?gateway=gw-t", headers=reader)
    assert resp.status_code == 502
    assert "InfluxDB answered a float for firmware" in resp.json()["detail"]


def test_latest_of_an_unknown_gateway_is_empty(
    client: TestClient, server: V2QueryServer, reader: dict[str, str]
) -> None:
    server.reply(Answer(200, "\r\n"))  # what InfluxDB 2 answers when no table matched
    resp = client.get("/api/v1/readings/latest?gateway=gw-none", headers=reader)
    assert resp.status_code == 200 and resp.json() == []


def test_series_is_aggregated_by_flux_into_the_v1_shape(
    client: TestClient, server: V2QueryServer, reader: dict[str, str]
) -> None:
    server.reply_tables(_series_tables(BUCKETS))
    resp = client.get("/api/v1/series", params=SERIES_PARAMS, headers=reader)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    points = body["points"]
    # the same buckets as the v1 test: starts aligned to whole minutes
    assert [(p["ts"], p["count"], p["min"], p["max"], p["mean"]) for p in points] == [
        (T0 - 20_000, 40, 0.5, 39.5, 20.0),
        (T0 + 40_000, 60, 40.5, 99.5, 70.0),
        (T0 + 100_000, 20, 100.5, 119.5, 110.0),
    ]
    assert points[0]["time"] == "2023-11-14T22:13:00Z"
    assert (body["gateway"], body["device"], body["metric"], body["every"]) == (
        "gw-r",
        "level-1",
        "level",
        "1m",
    )
    assert server.errors == []

    (flux,) = server.flux
    assert f'from(bucket: "{BUCKET}")' in flux
    assert "range(start: 2023-11-14T22:13:20.000Z, stop: 2023-11-14T22:15:20.000Z)" in flux
    for condition in (
        'r._measurement == "readings"',
        'r._field == "level"',
        'r.gateway == "gw-r"',
        'r.device == "level-1"',
    ):
        assert condition in flux
    for fn in ("mean", "min", "max", "count"):
        assert (
            f'aggregateWindow(every: 60000ms, fn: {fn}, timeSrc: "_start", createEmpty: false)'
        ) in flux
        assert f'yield(name: "{fn}")' in flux


def test_series_with_no_points_is_empty(
    client: TestClient, server: V2QueryServer, reader: dict[str, str]
) -> None:
    server.reply(Answer(200, "\r\n"))
    resp = client.get("/api/v1/series", params=SERIES_PARAMS | {"every": "10s"}, headers=reader)
    assert resp.status_code == 200 and resp.json()["points"] == []
    assert "aggregateWindow(every: 10000ms, fn: mean" in server.flux[0]


EVIL = [
    'gw" or true or r.gateway == "',
    'x") |> drop(columns: ["_value"]) |> yield(name: "pwned") //',
    'back\\slash\\" |> to(bucket: "other")',
    "${string(v: r._value)}",
    "$${x}$",
    "trailing backslash\\",
    'new\nline") |> yield(name: "x")\n//',
    "tab\tcr\rnul\x00del\x7f",
    "Sungai Ciliwung — pos 7 ✓",
]


@pytest.mark.parametrize("evil", EVIL)
def test_hostile_values_stay_inside_their_string_literals(
    central: Central, server: V2QueryServer, evil: str
) -> None:
    server.reply(Answer(200, "\r\n"))
    span = {"start_ms": T0, "end_ms": T0 + 3_600_000, "every_ms": 60_000}
    central.queries.series("gw-ok", "dev-ok", "metric-ok", **span)
    central.queries.latest("gw-ok", "dev-ok")
    central.queries.latest("gw-ok", "dev-ok", text=True)
    benign_series, benign_latest, benign_text = (split_flux(f) for f in server.flux)
    assert benign_text[1].count("gw-ok") == benign_text[1].count("dev-ok") == 2
    benign = {"gateway": "gw-ok", "device": "dev-ok", "metric": "metric-ok"}
    for which, ok in benign.items():
        names = benign | {which: evil}
        central.queries.series(names["gateway"], names["device"], names["metric"], **span)
        skeleton, literals = split_flux(server.flux[-1])
        assert skeleton == benign_series[0]
        assert literals == [evil if v == ok else v for v in benign_series[1]]
        if which != "metric":
            central.queries.latest(names["gateway"], names["device"])
            skeleton, literals = split_flux(server.flux[-1])
            assert skeleton == benign_latest[0]
            assert literals == [evil if v == ok else v for v in benign_latest[1]]
            central.queries.latest(names["gateway"], names["device"], text=True)
            skeleton, literals = split_flux(server.flux[-1])
            assert skeleton == benign_text[0]
            assert literals == [evil if v == ok else v for v in benign_text[1]]
    assert server.errors == []


@pytest.mark.parametrize("evil", [e for e in EVIL if not any(ord(c) < 0x20 for c in e)])
def test_hostile_api_parameters_reach_influxdb_only_as_data(
    client: TestClient, server: V2QueryServer, reader: dict[str, str], evil: str
) -> None:
    server.reply(Answer(200, "\r\n"))
    client.get("/api/v1/series", params=SERIES_PARAMS, headers=reader)
    benign = split_flux(server.flux[-1])
    for key in ("gateway", "device", "metric"):
        resp = client.get("/api/v1/series", params=SERIES_PARAMS | {key: evil}, headers=reader)
        assert resp.status_code == 200, resp.text
        skeleton, literals = split_flux(server.flux[-1])
        assert skeleton == benign[0]
        assert literals == [evil if v == SERIES_PARAMS[key] else v for v in benign[1]]
    resp = client.get("/api/v1/readings/latest", params={"gateway": evil}, headers=reader)
    assert resp.status_code == 200 and resp.json() == []
    assert f"r.gateway == {quote_flux(evil)}" in server.flux[-1]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (
            json_error(
                400, "invalid", "compilation failed: error @3:6-3:9: undefined identifier x"
            ),
            "InfluxDB answered 400: compilation failed",
        ),
        (json_error(404, "not found", 'bucket "pantau" not found'), "404: bucket"),
        (Answer(500, "<html><body>upstream crashed</body></html>", "text/html"), "500"),
        (Answer(503, "", "text/plain"), "503"),
        (Answer(200, error_csv("panic: memory allocation limit reached")), "memory allocation"),
        (
            Answer(
                200,
                "#datatype,string,long,double\r\n#group,false,false,false\r\n"
                "#default,_result,,\r\n,result,table,_value\r\n,,0,not-a-number\r\n",
            ),
            "unreadable",
        ),
    ],
)
def test_influxdb_errors_become_502_with_its_message(
    client: TestClient, server: V2QueryServer, reader: dict[str, str], answer: Answer, says: str
) -> None:
    server.reply(answer)
    for path, params in (
        ("/api/v1/readings/latest", {"gateway": "gw-r"}),
        ("/api/v1/series", SERIES_PARAMS),
    ):
        resp = client.get(path, params=params, headers=reader)
        assert resp.status_code == 502, (path, resp.text)
        detail = resp.json()["detail"]
        assert says in detail, detail
        assert "Traceback" not in detail and TOKEN not in detail


def test_wrong_token_or_org_is_a_502_that_names_no_secret(
    tmp_path: Path, server: V2QueryServer
) -> None:
    for overrides, says in (({"token": "tok-Wrong-1"}, "401"), ({"org": "kota-lain"}, "404")):
        central = Central(config(tmp_path, server.url, **overrides))
        try:
            token = central.tokens.create("read")[1]
            with TestClient(central_app(central)) as client:
                resp = client.get(
                    "/api/v1/readings/latest?gateway=g",
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert resp.status_code == 502, resp.text
            detail = resp.json()["detail"]
            assert says in detail and "tok-Wrong-1" not in detail and TOKEN not in detail
        finally:
            central.close()
    assert len(server.errors) == 2  # the server did refuse both


def test_influxdb_unreachable_is_a_502(tmp_path: Path) -> None:
    down = V2QueryServer(ORG, TOKEN)  # bound, never serving, then closed: a free port
    url = down.url
    down.server.server_close()
    central = Central(config(tmp_path, url))
    try:
        token = central.tokens.create("read")[1]
        with TestClient(central_app(central)) as client:
            resp = client.get(
                "/api/v1/series",
                params=SERIES_PARAMS,
                headers={"Authorization": f"Bearer {token}"},
            )
        assert resp.status_code == 502
        assert f"InfluxDB unreachable at {url}" in resp.json()["detail"]
    finally:
        central.close()


def central_app(central: Central) -> FastAPI:
    return create_app(central.config, central)
