"""deploy/grafana: every query of every shipped dashboard runs on the real InfluxDB 1.6.7
against data shaped like the demo's (written by central's own line-protocol encoder),
without an error and with results: a renamed measurement, field or tag fails here.

Grafana's macros are substituted as Grafana does for a relative time range:
``$timeFilter`` → ``time >= now() - <range>``, ``$__interval`` → a bucket width, and
each template variable → its values from its own query, as the regex Grafana builds
for "All" (``(a|b|c)``)."""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import wire
import wire.structs
from central.lineprotocol import Encoder
from scripts.services import InfluxDB

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "pantau-influxdb"
GOLDEN_RECEIPTS = Path(__file__).resolve().parents[1] / "agent" / "golden_escpos"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold their panels


def _dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# demo-shaped data


def _telemetry(gateway: str, site: str, readings: list[dict[str, Any]]) -> wire.Telemetry:
    data = {"gateway": gateway, "seq": 1, "site": site, "readings": readings}
    return wire.structs.convert(data, wire.Telemetry)  # validated, as wire.decode would


def _health_line(
    gateway: str, site: str, vitals: dict[str, float], devices: dict[str, str], ts: int
) -> str:
    message = wire.structs.convert(
        {
            "gateway": gateway,
            "seq": 1,
            "site": site,
            "ts": ts,
            **vitals,
            "devices": {d: {"status": s} for d, s in devices.items()},
        },
        wire.Health,
    )
    return Encoder().health(message, site=site)  # central stores the registry's site


def _demo_lines(now_ms: int) -> list[str]:
    """Three hours of the demo's devices every 5 minutes, receipts over two days."""
    encoder = Encoder()
    lines: list[str] = []
    step = 300_000
    for i in range(36):
        ts = now_ms - (35 - i) * step - 30_000
        last = i == 35
        river: list[dict[str, Any]] = [
            {"device": "batu-merah-level", "metric": "level_cm", "value": 200 + 5 * i, "ts": ts},
            {"device": "batu-merah-level", "metric": "air_gap_cm", "value": 400 - 5 * i, "ts": ts},
            {"device": "batu-merah-rain", "metric": "rain_tips", "value": 3 * i, "ts": ts},
            {"device": "batu-merah-rain", "metric": "rain_mm_total", "value": 0.6 * i, "ts": ts},
            {"device": "batu-merah-rain", "metric": "rain_mm_per_h", "value": 7.2, "ts": ts},
            {"device": "wai-ruhu-level", "metric": "level_m", "value": 1.5 + 0.01 * i, "ts": ts},
        ]
        if i == 20:  # the radar lost its echo once
            river[0] = {**river[0], "value": None, "quality": "bad", "error": "no echo"}
        app_up = 0 if last else 1
        network: list[dict[str, Any]] = [
            {"device": "lapor-kota-http", "metric": "up", "value": 1, "ts": ts},
            {"device": "lapor-kota-http", "metric": "status", "value": 200, "ts": ts},
            {"device": "lapor-kota-http", "metric": "latency_ms", "value": 12.5, "ts": ts},
            {"device": "lapor-kota-http", "metric": "cert_days_left", "value": 41.2, "ts": ts},
            {"device": "lapor-kota-port", "metric": "up", "value": app_up, "ts": ts},
            {
                "device": "lapor-kota-port",
                "metric": "connect_ms",
                "value": None if last else 0.4,
                "ts": ts,
                **({"quality": "bad", "error": "connection refused"} if last else {}),
            },
            {"device": "tower-ping", "metric": "up", "value": 1, "ts": ts},
            {"device": "tower-ping", "metric": "loss_pct", "value": 0.0, "ts": ts},
            {"device": "tower-ping", "metric": "rtt_avg_ms", "value": 23.1, "ts": ts},
            {"device": "tower-ups", "metric": "on_battery", "value": int(i > 30), "ts": ts},
            {"device": "tower-ups", "metric": "mains_ok", "value": int(i <= 30), "ts": ts},
            {"device": "tower-ups", "metric": "battery_minutes_left", "value": 90 - i, "ts": ts},
        ]
        lines += encoder.telemetry(
            _telemetry("gw-demo-sungai", "sungai-batu-merah", river + network),
            site="sungai-batu-merah",  # central stores the registry's site
        )
        vitals = {
            "uptime_s": 3600.0 + i * 300,
            "cpu_temp_c": 48.5,
            "load1": 0.3,
            "mem_used_pct": 41.0,
            "disk_free_mb": 12000.0,
            "buffer_depth": 0 if i % 6 else 250,
            "buffer_oldest_age_s": 0.0,
            "dropped": 0,
        }
        lines.append(
            _health_line(
                "gw-demo-sungai",
                "sungai-batu-merah",
                vitals,
                {"batu-merah-level": "ok", "lapor-kota-port": "failing" if last else "ok"},
                ts,
            )
        )
        lines.append(
            _health_line("gw-demo-resto", "resto-pasar-mardika", vitals, {"kasir-1": "ok"}, ts)
        )
    receipts = [
        r
        for name in ("restaurant", "parking", "hotel")
        for r in json.loads((GOLDEN_RECEIPTS / f"{name}.json").read_text())
    ]
    for n in range(24):  # one every two hours, the newest an hour ago
        data = dict(receipts[n % len(receipts)])
        error = data.pop("error", None)
        if n == 5:
            data["total"], error = None, "no total"
        for site, device in (("resto-pasar-mardika", "kasir-1"), ("hotel-ambon-manise", "kasir-2")):
            event = wire.structs.convert(
                {
                    "gateway": "gw-demo-resto",
                    "seq": n,
                    "site": site,
                    "device": device,
                    "kind": "receipt",
                    "ts": now_ms - (n * 2 + 1) * 3_600_000,
                    "data": {k: v for k, v in data.items() if v is not None},
                    "error": error,
                },
                wire.Event,
            )
            lines += encoder.event(event, site=site)
    return lines


@pytest.fixture(scope="module")
def demo_db(influx: InfluxDB) -> str:
    db = f"grafana_{int(time.time() * 1000)}"
    influx.create_database(db)
    body = ("\n".join(_demo_lines(int(time.time() * 1000))) + "\n").encode()
    answer = httpx.post(f"{influx.url}/write", params={"db": db, "precision": "ms"}, content=body)
    assert answer.status_code == 204, answer.text
    return db


# Grafana's substitutions


def _range(dashboard: dict[str, Any]) -> str:
    start = dashboard["time"]["from"]
    match = re.fullmatch(r"now-(\d+[mhdw])", start)
    assert match and dashboard["time"]["to"] == "now", f"{dashboard['uid']}: time {start}"
    return match.group(1)


def _regex_escape(value: str) -> str:
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def _interpolate(query: str, dashboard: dict[str, Any], variables: dict[str, list[str]]) -> str:
    out = query.replace("$timeFilter", f"time >= now() - {_range(dashboard)}")
    out = out.replace("$__interval", "5m").replace("$interval", "5m")
    for name in sorted(variables, key=len, reverse=True):
        values = "|".join(_regex_escape(v) for v in variables[name])
        out = re.sub(rf"\$(?:{{{name}}}|{name}\b)", f"({values})", out)
    left = re.search(r"\$\{?\w+", out)
    assert left is None, f"{dashboard['uid']}: {left.group(0)} not substituted in {query}"
    return out


def _run(influx: InfluxDB, db: str, query: str) -> list[dict[str, Any]]:
    result = influx.query(query, db)["results"][0]
    assert "error" not in result, f"{result['error']}\n  in {query}"
    series: list[dict[str, Any]] = result.get("series") or []
    return series


def _variables(influx: InfluxDB, db: str, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        query = _interpolate(variable["query"], dashboard, values)
        found = [row[1] for s in _run(influx, db, query) for row in s["values"]]
        assert found, f"{dashboard['uid']}: variable {variable['name']} is empty: {query}"
        values[variable["name"]] = found
    return values


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_dashboard_query_runs_and_finds_the_demo_data(
    influx: InfluxDB, demo_db: str, path: Path
) -> None:
    dashboard = _dashboard(path)
    variables = _variables(influx, demo_db, dashboard)
    queries = 0
    for panel in _panels(dashboard["panels"]):
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("rawQuery") is True, f"{panel['title']}: not a raw InfluxQL query"
            query = _interpolate(target["query"], dashboard, variables)
            series = _run(influx, demo_db, query)
            points = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
            assert points, f"{path.name}: panel {panel['title']!r} finds nothing: {query}"
            queries += 1
    assert queries >= 6


def test_shipped_dashboards_and_provisioning_fit_together() -> None:
    assert {p.stem for p in DASHBOARDS} == {"fleet", "river", "tapping-box", "network"}
    uids = [_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/pantau.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "influxdb"
    assert source["jsonData"]["dbName"] == "pantau"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/pantau.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"


def test_a_query_on_a_measurement_pantau_does_not_write_would_fail(
    influx: InfluxDB, demo_db: str
) -> None:
    """The check above can fail: a misspelt field finds nothing."""
    assert (
        _run(influx, demo_db, 'SELECT mean("level") FROM "readings" WHERE time > now() - 6h') == []
    )
    with pytest.raises(AssertionError, match="not substituted"):
        _interpolate(
            "SELECT 1 FROM x WHERE $unknown",
            {"uid": "x", "time": {"from": "now-6h", "to": "now"}},
            {},
        )
