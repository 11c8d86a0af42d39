"""The HTTP API against a real registry and a real InfluxDB (ingest not started)."""

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import wire
import wire.structs
from central.api.app import create_app
from central.config import CentralConfig
from central.lineprotocol import Encoder
from central.service import Central
from scripts.services import InfluxDB
from wire.structs import convert

OPEN = {"/healthz", "/readyz"}


def _all_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its OpenAPI schema (so routes added
    later, by anyone, are covered too); path parameters filled with ``1``."""
    out = []
    for path, item in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method in item:
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return out


def test_every_route_but_health_needs_a_token_and_writes_need_admin(
    client: TestClient, reader: dict[str, str]
) -> None:
    routes = _all_routes(client)
    assert len(routes) >= 15  # sites, gateways, devices, readings, series, dead letters, health
    for method, path in routes:
        anonymous = client.request(method, path)
        if path in OPEN:
            assert anonymous.status_code in (200, 503), (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        bad = client.request(method, path, headers={"Authorization": "Bearer pt_wrong"})
        assert bad.status_code == 401, (method, path)
        if method != "GET":
            forbidden = client.request(method, path, headers=reader, json={})
            assert forbidden.status_code == 403, (method, path, forbidden.text)


def test_provisioned_gateway_is_never_seen_until_it_speaks(
    client: TestClient, central: Central, admin: dict[str, str], reader: dict[str, str]
) -> None:
    body = {
        "id": "gw-prov-1",
        "site": "kota-bogor",
        "name": "Pos Katulampa",
        "location": {"lat": -6.63, "lon": 106.84},
        "timezone": "WIB",
    }
    created = client.post("/api/v1/gateways", json=body, headers=admin)
    assert created.status_code == 201, created.text
    again = client.post("/api/v1/gateways", json=body, headers=admin)
    assert again.status_code == 409
    got = client.get("/api/v1/gateways/gw-prov-1", headers=reader).json()
    assert got["status"] == "never-seen"
    assert got["last_seen"] is None
    assert got["location"] == {"lat": -6.63, "lon": 106.84}
    assert central.registry.site_timezone("kota-bogor") == "Asia/Jakarta"

    central.registry.heard("gw-prov-1", "kota-bogor", 1, now=1_800_000_000.0)
    got = client.get("/api/v1/gateways/gw-prov-1", headers=reader).json()
    assert got["status"] == "online"
    assert got["last_seen"].startswith("2027-01-15T08:00:00")
    assert got["provisioned"] is True


def test_gateway_heard_first_on_the_broker_is_listed(
    client: TestClient, central: Central, reader: dict[str, str]
) -> None:
    central.registry.heard("gw-wild", "kota-x", 5)
    ids = [g["id"] for g in client.get("/api/v1/gateways", headers=reader).json()]
    assert ids == ["gw-wild"]
    assert client.get("/api/v1/gateways/gw-none", headers=reader).status_code == 404


def test_gateway_update_and_delete(client: TestClient, admin: dict[str, str]) -> None:
    client.post("/api/v1/gateways", json={"id": "gw-u"}, headers=admin)
    patched = client.patch(
        "/api/v1/gateways/gw-u", json={"name": "Tower 7", "location": None}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Tower 7"
    assert client.patch("/api/v1/gateways/gw-u", json={"id": "x"}, headers=admin).status_code == 422
    assert client.delete("/api/v1/gateways/gw-u", headers=admin).status_code == 204
    assert client.delete("/api/v1/gateways/gw-u", headers=admin).status_code == 404


def test_bad_gateway_bodies_are_refused(client: TestClient, admin: dict[str, str]) -> None:
    for body in (
        {"id": "GW_UPPER"},
        {"id": "gw-1", "location": {"lat": 91, "lon": 0}},
        {"id": "gw-1", "timezone": "Mars/Olympus"},
        {"id": "gw-1", "extra": 1},
    ):
        assert client.post("/api/v1/gateways", json=body, headers=admin).status_code == 422, body


def test_sites_crud_with_indonesian_time_zone_aliases(
    client: TestClient, central: Central, admin: dict[str, str], reader: dict[str, str]
) -> None:
    for name, tz, iana in (
        ("kota-medan", "WIB", "Asia/Jakarta"),
        ("kota-makassar", "wita", "Asia/Makassar"),
        ("kota-jayapura", "WIT", "Asia/Jayapura"),
        ("kota-pontianak", "Asia/Pontianak", "Asia/Pontianak"),
    ):
        resp = client.post("/api/v1/sites", json={"name": name, "timezone": tz}, headers=admin)
        assert resp.status_code == 201, resp.text
        assert resp.json()["timezone"] == iana
        assert central.registry.site_timezone(name) == iana
    assert (
        client.post("/api/v1/sites", json={"name": "kota-medan"}, headers=admin).status_code == 409
    )
    names = [s["name"] for s in client.get("/api/v1/sites", headers=reader).json()]
    assert names == sorted(["kota-medan", "kota-makassar", "kota-jayapura", "kota-pontianak"])
    patched = client.patch("/api/v1/sites/kota-medan", json={"timezone": "WITA"}, headers=admin)
    assert patched.json()["timezone"] == "Asia/Makassar"
    client.post("/api/v1/gateways", json={"id": "gw-m", "site": "kota-medan"}, headers=admin)
    assert client.delete("/api/v1/sites/kota-medan", headers=admin).status_code == 409
    client.delete("/api/v1/gateways/gw-m", headers=admin)
    assert client.delete("/api/v1/sites/kota-medan", headers=admin).status_code == 204
    assert client.get("/api/v1/sites/kota-medan", headers=reader).status_code == 404
    assert central.registry.site_timezone("unknown-site") == "Asia/Jakarta"


def _write(influx: InfluxDB, db: str, lines: list[str]) -> None:
    resp = httpx.post(
        f"{influx.url}/write", params={"db": db, "precision": "ms"}, content="\n".join(lines)
    )
    assert resp.status_code == 204, resp.text


def test_latest_and_series_come_from_influxdb(
    client: TestClient, influx: InfluxDB, influx_db: str, reader: dict[str, str]
) -> None:
    t0 = 1_700_000_000_000
    lines = [
        f"readings,device=level-1,gateway=gw-r level={i}.5 {t0 + i * 1000}" for i in range(120)
    ]
    lines += [f"readings,device=rain-1,gateway=gw-r rain=3.0,ok=true {t0 + 5000}"]
    lines += [f"readings,device=level-1,gateway=gw-other level=99.0 {t0 + 999_000}"]
    _write(influx, influx_db, lines)

    latest = client.get("/api/v1/readings/latest?gateway=gw-r", headers=reader).json()
    assert [(r["device"], r["metric"], r["value"], r["ts"]) for r in latest] == [
        ("level-1", "level", 119.5, t0 + 119_000),
        ("rain-1", "ok", True, t0 + 5000),
        ("rain-1", "rain", 3.0, t0 + 5000),
    ]
    one = client.get("/api/v1/readings/latest?gateway=gw-r&device=rain-1", headers=reader).json()
    assert {r["metric"] for r in one} == {"ok", "rain"}

    params = {
        "gateway": "gw-r",
        "device": "level-1",
        "metric": "level",
        "start": "2023-11-14T22:13:20Z",  # t0
        "end": "2023-11-14T22:15:20Z",  # t0 + 120 s
        "every": "1m",
    }
    series = client.get("/api/v1/series", params=params, headers=reader)
    assert series.status_code == 200, series.text
    points = series.json()["points"]
    assert [(p["ts"], p["count"], p["min"], p["max"]) for p in points] == [
        (t0 - 20_000, 40, 0.5, 39.5),  # buckets align to whole minutes
        (t0 + 40_000, 60, 40.5, 99.5),
        (t0 + 100_000, 20, 100.5, 119.5),
    ]
    assert points[1]["mean"] == pytest.approx(70.0)


def test_latest_has_the_text_readings_too_as_strings(
    client: TestClient, central: Central, influx: InfluxDB, influx_db: str, reader: dict[str, str]
) -> None:
    t0 = 1_700_000_000_000
    readings = [  # written by central's own encoder, as ingest writes them
        {"device": "pump-1", "metric": "flow_lps", "value": 12.5, "ts": t0},
        {"device": "pump-1", "metric": "firmware", "value": "v2.<b>1</b>", "ts": t0 + 1000},
        {"device": "pump-1", "metric": "state", "value": "1.5", "ts": t0 + 2000},  # not a number
        {"device": "pump-1", "metric": "mode", "value": 3.0, "ts": t0},  # then it became text:
        {"device": "pump-1", "metric": "mode", "value": "auto", "ts": t0 + 5000},  # newer wins
        {"device": "pump-1", "metric": "alarm", "value": "none", "ts": t0},  # then a number:
        {"device": "pump-1", "metric": "alarm", "value": 0.0, "ts": t0},  # same time: the number
        {"device": "gate-2", "metric": "status", "value": "closed", "ts": t0 + 3000},
        {"device": "gate-2", "metric": "open_pct", "value": 0.0, "ts": t0 + 3000},
    ]
    message = wire.structs.convert(
        {"gateway": "gw-t", "seq": 1, "readings": readings}, wire.Telemetry
    )
    lines = Encoder().telemetry(message, site="kota-bogor")
    other = {"gateway": "gw-u", "seq": 1, "readings": [{**readings[1], "value": "not mine"}]}
    lines += Encoder().telemetry(wire.structs.convert(other, wire.Telemetry), site="kota-bogor")
    _write(influx, influx_db, lines)
    assert influx.values('SELECT "firmware" FROM "readings_text"', influx_db)  # stored as text

    latest = client.get("/api/v1/readings/latest?gateway=gw-t", headers=reader).json()
    assert [(r["device"], r["metric"], r["value"], r["ts"]) for r in latest] == [
        ("gate-2", "open_pct", 0.0, t0 + 3000),
        ("gate-2", "status", "closed", t0 + 3000),
        ("pump-1", "alarm", 0.0, t0),
        ("pump-1", "firmware", "v2.<b>1</b>", t0 + 1000),
        ("pump-1", "flow_lps", 12.5, t0),
        ("pump-1", "mode", "auto", t0 + 5000),
        ("pump-1", "state", "1.5", t0 + 2000),  # a string stays a string in the JSON
    ]
    assert latest[1]["time"] == "2023-11-14T22:13:23Z"
    one = client.get("/api/v1/readings/latest?gateway=gw-t&device=gate-2", headers=reader)
    assert [(r["metric"], r["value"]) for r in one.json()] == [
        ("open_pct", 0.0),
        ("status", "closed"),
    ]
    # the numeric reads (river, network pages) leave the text out
    assert [r.metric for r in central.queries.latest("gw-t", "gate-2")] == ["open_pct"]
    text_only = client.get("/api/v1/readings/latest?gateway=gw-u", headers=reader).json()
    assert [(r["metric"], r["value"]) for r in text_only] == [("firmware", "not mine")]


@pytest.mark.parametrize(
    "evil",
    [
        'level" FROM readings; DROP DATABASE x; --',
        "x' OR '1'='1",
        "back\\slash'\"",
    ],
)
def test_series_parameters_cannot_inject_influxql(
    client: TestClient, influx: InfluxDB, influx_db: str, reader: dict[str, str], evil: str
) -> None:
    _write(influx, influx_db, ["readings,device=d,gateway=gw-i level=1.0 1700000000000"])
    for key in ("gateway", "device", "metric"):
        params = {"gateway": "gw-i", "device": "d", "metric": "level", key: evil}
        params |= {"start": "2023-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z", "every": "1d"}
        resp = client.get("/api/v1/series", params=params, headers=reader)
        assert resp.status_code == 200, resp.text
        assert resp.json()["points"] == []
    latest = client.get("/api/v1/readings/latest", params={"gateway": evil}, headers=reader)
    assert latest.status_code == 200 and latest.json() == []
    assert influx.values("SHOW DATABASES", influx_db)  # nothing dropped
    assert influx.values('SELECT "level" FROM readings', influx_db) == [[1700000000000, 1.0]]


def test_series_validates_its_parameters(client: TestClient, reader: dict[str, str]) -> None:
    base = {"gateway": "g", "device": "d", "metric": "m"}
    for extra in (
        {"every": "soon"},
        {"every": "1ms", "start": "2020-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        {"start": "2024-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
        {"start": "yesterday"},
    ):
        resp = client.get("/api/v1/series", params=base | extra, headers=reader)
        assert resp.status_code == 422, (extra, resp.text)


def test_v2_reads_with_influxdb_down_answer_502(tmp_path: Path) -> None:
    """v2 reads go through Flux (tests/central/test_queries_v2.py); nothing listens here."""
    config = convert(
        {
            "influx": {
                "url": "http://127.0.0.1:9",
                "api": "v2",
                "org": "o",
                "bucket": "b",
                "token": "t",
            },
            "data_dir": str(tmp_path),
        },
        CentralConfig,
    )
    central = Central(config)
    try:
        token = central.tokens.create("read")[1]
        with TestClient(create_app(config, central)) as client:
            resp = client.get(
                "/api/v1/readings/latest?gateway=g", headers={"Authorization": f"Bearer {token}"}
            )
        assert resp.status_code == 502
        assert "InfluxDB unreachable at http://127.0.0.1:9" in resp.json()["detail"]
    finally:
        central.writer.close()
        central.registry.close()
        central.tokens.close()


def test_dead_letters_are_listed_newest_first(
    client: TestClient, central: Central, reader: dict[str, str]
) -> None:
    central.registry.dead_letter("pantau/v1/gw-d/telemetry", "gw-d", "bad_json", "x", b"{nope")
    central.registry.dead_letter("pantau/v1/gw-d/telemetry", "gw-d", "schema", "y", b"\xff\xfe")
    rows = client.get("/api/v1/dead-letters", headers=reader).json()
    assert [r["reason"] for r in rows] == ["schema", "bad_json"]
    assert rows[0]["payload"] is None and rows[0]["payload_hex"] == "fffe"
    assert rows[1]["payload"] == "{nope"
    only = client.get("/api/v1/dead-letters?reason=bad_json", headers=reader).json()
    assert len(only) == 1
    got = client.get(f"/api/v1/dead-letters/{rows[1]['id']}", headers=reader)
    assert got.json()["detail"] == "x"


def test_metrics_need_a_read_token_and_speak_prometheus(
    client: TestClient, reader: dict[str, str]
) -> None:
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=reader).text
    assert "# TYPE pantau_readings_ingested_total counter" in text
    assert "pantau_pending_points 0" in text


def test_readyz_is_503_until_connected(client: TestClient) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["broker"] is False
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/docs").status_code == 200
