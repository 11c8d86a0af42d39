"""The data behind each dashboard page, read from the same registry, alert store and
InfluxDB queries as the JSON API (so both show the same numbers). Plain dicts and
lists for the templates; nothing here renders HTML."""

import json
import logging
import math
import time
from datetime import datetime
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from central.alerts.matching import Where, matches
from central.alerts.rules import LevelsRule, StaleRule
from central.dashboard import reads
from central.queries import QueryError, QueryUnsupported
from central.registry import DEFAULT_TIMEZONE
from central.service import Central

log = logging.getLogger(__name__)

STATUSES = ("online", "offline", "never-seen")
HOUR_MS = 3600_000
LEVEL_METRICS = ("level_m", "level_cm")  # what the shipped river profiles report
LATENCY_METRICS = ("rtt_avg_ms", "latency_ms", "connect_ms")


class Problems:
    """InfluxDB failures met while building a page: shown on it, logged once a minute."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def run(self, what: str, call: Any, default: Any) -> Any:
        try:
            return call()
        except QueryUnsupported:
            return default
        except QueryError as exc:
            self.messages.append(f"{what}: {exc}")
            return default


def _devices_by_profile(central: Central, prefix: str) -> list[dict[str, Any]]:
    out = []
    for gateway in central.registry.gateways():
        for device in central.registry.devices(gateway["id"]):
            if (device["profile"] or "").startswith(prefix):
                out.append({**device, "site": gateway["site"], "gateway_status": gateway["status"]})
    return out


# overview


@cache
def _outline() -> list[list[tuple[float, float]]]:
    text = resources.files("central.dashboard").joinpath("data/indonesia-110m.geo.json")
    doc = json.loads(text.read_text(encoding="utf-8"))
    rings = []
    for feature in doc["features"]:
        for polygon in feature["geometry"]["coordinates"]:
            rings.append([(float(x), float(y)) for x, y in polygon[0]])
    return rings


MAP_BOUNDS = (94.0, -11.5, 142.0, 6.5)  # lon, lat: the archipelago
MAP_WIDTH = 960.0
TILE = 256
MARKER = 7.0  # marker radius, in pixels of a MAP_WIDTH-wide map


def _bounds(located: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    west, south, east, north = MAP_BOUNDS
    for g in located:
        west, east = min(west, g["lon"] - 1), max(east, g["lon"] + 1)
        south, north = min(south, g["lat"] - 1), max(north, g["lat"] + 1)
    return west, south, east, north


def site_map(gateways: list[dict[str, Any]], tiles: str | None = None) -> dict[str, Any]:
    """SVG geometry: one marker per located gateway over the bundled outline (an
    equirectangular projection of the archipelago, widened to fit every marker), or
    over map tiles from ``tiles`` (Web Mercator, the zoom that fits MAP_WIDTH)."""
    located = [g for g in gateways if g["lat"] is not None and g["lon"] is not None]
    west, south, east, north = _bounds(located)
    if tiles:
        zoom = max(1, min(18, math.floor(math.log2(MAP_WIDTH * 360 / (TILE * (east - west))))))
        world = TILE * 2**zoom

        def xy(lon: float, lat: float) -> tuple[float, float]:
            sin = math.sin(math.radians(max(-85.0, min(85.0, lat))))
            y = (0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * world
            return round((lon + 180) / 360 * world, 1), round(y, 1)

        x0, y0 = xy(west, north)
        x1, y1 = xy(east, south)
        images = [
            {
                "href": tiles.replace("{s}", "a")
                .replace("{z}", str(zoom))
                .replace("{x}", str(tx))
                .replace("{y}", str(ty)),
                "x": tx * TILE,
                "y": ty * TILE,
            }
            for tx in range(int(x0 // TILE), int(x1 // TILE) + 1)
            for ty in range(int(y0 // TILE), int(y1 // TILE) + 1)
        ]
        view = (x0, y0, x1 - x0, y1 - y0)
        paths: list[str] = []
    else:
        scale = MAP_WIDTH / (east - west)

        def xy(lon: float, lat: float) -> tuple[float, float]:
            return round((lon - west) * scale, 1), round((north - lat) * scale, 1)

        images = []
        view = (0.0, 0.0, MAP_WIDTH, round((north - south) * scale, 1))
        paths = [
            "M" + " L".join(f"{x},{y}" for x, y in (xy(lon, lat) for lon, lat in ring)) + " Z"
            for ring in _outline()
        ]
    markers = []
    for g in located:
        x, y = xy(g["lon"], g["lat"])
        markers.append({"id": g["id"], "site": g["site"], "status": g["status"], "x": x, "y": y})
    return {
        "view": " ".join(f"{v:g}" for v in view),
        "x": view[0],
        "y": view[1],
        "width": view[2],
        "height": view[3],
        "paths": paths,
        "tiles": images,
        "tile": TILE,
        "r": round(MARKER * view[2] / MAP_WIDTH, 1),
        "markers": markers,
    }


def overview(central: Central, now: float) -> dict[str, Any]:
    tiles = central.config.dashboard.map_tiles
    gateways = central.registry.gateways()
    counts = dict.fromkeys(STATUSES, 0)
    for g in gateways:
        counts[g["status"]] = counts.get(g["status"], 0) + 1
    alerts = central.alerts
    firing = [
        {**r, "state": alerts.state_of(r, now)}
        for r in alerts.incidents.search(status="firing", limit=100)
    ]
    sites: dict[str, dict[str, int]] = {}
    for g in gateways:
        per = sites.setdefault(g["site"] or "-", dict.fromkeys(STATUSES, 0))
        per[g["status"]] += 1
    return {
        "counts": counts,
        "sites": sites,
        "map": site_map(gateways, tiles),
        "firing": firing,
        "down": [g for g in gateways if g["status"] != "online"],
        "dead_letters_hour": central.registry.count_dead_letters_since(now - 3600),
    }


# gateways


def gateways(central: Central) -> list[dict[str, Any]]:
    return central.registry.gateways()


def sparkline(points: list[tuple[int, float]], width: int = 120, height: int = 28) -> str:
    """An SVG polyline's points for ``points`` scaled into width x height."""
    if len(points) < 2:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    values = [v for _, v in points if math.isfinite(v)]
    low, high = min(values), max(values)
    span_t, span_v = (t1 - t0) or 1, (high - low) or 1.0
    out = []
    for ts, value in points:
        x = (ts - t0) / span_t * (width - 2) + 1
        y = height - 1 - (value - low) / span_v * (height - 2)
        out.append(f"{x:.1f},{y:.1f}")
    return " ".join(out)


def gateway(central: Central, gateway_id: str, now: float) -> dict[str, Any] | None:
    row = central.registry.gateway(gateway_id)
    if row is None:
        return None
    problems = Problems()
    latest = problems.run(
        "latest readings", lambda: central.queries.latest(gateway_id, text=True), []
    )
    errors = problems.run(
        "reading errors", lambda: reads.latest_errors(central.queries, gateway_id), {}
    )
    end_ms = int(now * 1000)
    lines = problems.run(
        "last hour",
        lambda: reads.sparklines(central.queries, gateway_id, end_ms - HOUR_MS, end_ms, 60_000),
        {},
    )
    units = central.registry.metric_units(gateway_id)
    health = row["health"] or {}
    device_health = health.get("devices") or {}
    devices: dict[str, dict[str, Any]] = {}
    for d in central.registry.devices(gateway_id):
        devices[d["id"]] = {**d, "readings": {}, "health": device_health.get(d["id"])}
    for r in latest:
        device = devices.setdefault(
            r.device, {"id": r.device, "profile": None, "readings": {}, "health": None}
        )
        device["readings"][r.metric] = {
            "metric": r.metric,
            "value": r.value,
            "ts": r.ts,
            "unit": units.get((r.device, r.metric)),
            "quality": "good",
            "error": None,
            "spark": sparkline(lines.get((r.device, r.metric), [])),
        }
    for (device_id, metric), (ts, error) in errors.items():
        device = devices.setdefault(
            device_id, {"id": device_id, "profile": None, "readings": {}, "health": None}
        )
        reading = device["readings"].get(metric)
        if reading is None or ts >= reading["ts"]:
            device["readings"][metric] = {
                **(reading or {"metric": metric, "spark": ""}),
                "value": None,  # a failed read has no value; the last good one is in the spark
                "ts": ts,
                "unit": units.get((device_id, metric)),
                "quality": "bad",
                "error": error,
            }
    for device in devices.values():
        device["readings"] = [device["readings"][k] for k in sorted(device["readings"])]
    return {
        "gateway": row,
        "health": row["health"],
        "devices": [devices[k] for k in sorted(devices)],
        "problems": problems.messages,
    }


# river stations


def _levels_rule(central: Central, where: Where) -> LevelsRule | None:
    """The first ``levels`` rule for this station's level (any level metric)."""
    for rule in central.alerts.engine.rules.rules:
        if isinstance(rule, LevelsRule) and matches(rule.match, where, ignore_metric=True):
            metric = rule.match.metric
            if metric is None or any(fnmatchcase(m, metric) for m in LEVEL_METRICS):
                return rule
    return None


def _bands(rule: LevelsRule | None, device: str) -> dict[str, float]:
    """The rule's Siaga bands, lowest first (a device override wins)."""
    if rule is None:
        return {}
    for pattern, bands in rule.overrides.items():
        if fnmatchcase(device, pattern):
            return dict(bands)
    return dict(rule.levels)


def river(central: Central, now: float) -> dict[str, Any]:
    problems = Problems()
    stations = []
    by_gateway: dict[str, list[Any]] = {}
    for d in _devices_by_profile(central, "river/"):
        gw = d["gateway"]
        if gw not in by_gateway:
            by_gateway[gw] = problems.run(
                "latest readings", lambda gw=gw: central.queries.latest(gw), []
            )
        values = {r.metric: r for r in by_gateway[gw] if r.device == d["id"]}
        rule = _levels_rule(central, Where(gw, d["id"], d["site"], d["profile"]))
        wanted = rule.match.metric if rule and rule.match.metric in LEVEL_METRICS else None
        metric = wanted or next((m for m in LEVEL_METRICS if m in values), None)
        level = values.get(metric) if metric else None
        if level is None and d["profile"].startswith("river/rain"):
            continue  # a rain gauge: shown in the rain column of its gateway's stations
        rain = [
            {"device": r.device, "metric": r.metric, "value": r.value}
            for r in by_gateway[gw]
            if r.metric.startswith("rain_") and r.metric != "rain_tips"
        ]
        bands = _bands(rule, d["id"])
        band = "normal"
        if level is not None and isinstance(level.value, int | float):
            for name, threshold in bands.items():
                if level.value >= threshold:
                    band = name
        trend = None
        if level is not None and metric is not None:
            trend = problems.run(
                "trend",
                lambda gw=gw, d=d, metric=metric: reads.change(
                    central.queries, gw, d["id"], metric, int(now * 1000) - 600_000
                ),
                None,
            )
        units = central.registry.metric_units(gw)
        value = level.value if level is not None else None
        stations.append(
            {
                **d,
                "metric": metric,
                "level": level,
                "unit": units.get((d["id"], metric or ""), ""),
                "bands": bands,
                "band": band,
                "trend": trend,
                "rain": rain,
                "gauge": gauge(value if isinstance(value, int | float) else None, bands),
            }
        )
    return {"stations": stations, "problems": problems.messages}


GAUGE_WIDTH = 200.0


def gauge(value: float | None, bands: dict[str, float]) -> dict[str, Any] | None:
    """A horizontal bar from 0: one segment per band from its mark, and the level."""
    if not bands:
        return None
    marks = list(bands.values())
    top = max([*marks, value or 0.0]) * 1.15 or 1.0

    def x(v: float) -> float:
        return round(max(0.0, min(v, top)) / top * GAUGE_WIDTH, 1)

    segments = []
    names = list(bands)
    for i, name in enumerate(names):
        start = x(bands[name])
        end = x(bands[names[i + 1]]) if i + 1 < len(names) else GAUGE_WIDTH
        segments.append({"name": name, "x": start, "width": round(end - start, 1)})
    return {
        "width": GAUGE_WIDTH,
        "normal": x(marks[0]),
        "segments": segments,
        "level": None if value is None else x(value),
    }


# tapping boxes


def _midnight_ms(now: float, timezone: str, days_back: int = 0) -> int:
    local = datetime.fromtimestamp(now, ZoneInfo(timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp() * 1000) - days_back * 86_400_000


def tapping(central: Central, now: float) -> dict[str, Any]:
    problems = Problems()
    boxes = _devices_by_profile(central, "tapping-box/")
    # the tax office's day: the time zone of the first box's site (WIB by default)
    timezone = central.registry.site_timezone(boxes[0]["site"]) if boxes else DEFAULT_TIMEZONE
    today = _midnight_ms(now, timezone)
    rows = problems.run(
        "receipts",
        lambda: reads.receipts(
            central.queries, _midnight_ms(now, timezone, 6), timezone, int(now * 1000)
        ),
        [],
    )
    last = problems.run("last receipts", lambda: reads.last_receipts(central.queries), {})
    stale_rules = {r.name for r in central.alerts.engine.rules.rules if isinstance(r, StaleRule)}
    silent = {
        (i["gateway"], i["device"])
        for i in central.alerts.incidents.search(status="firing", limit=1000)
        if i["rule"] in stale_rules
    }
    sites = {(b["gateway"], b["id"]): b["site"] for b in boxes}
    per_box = []
    for b in boxes:
        key = (b["gateway"], b["id"])
        todays = [r for r in rows if (r.gateway, r.device) == key and r.day_ms >= today]
        per_box.append(
            {
                **b,
                "receipts_today": sum(r.count for r in todays),
                "revenue_today": sum(r.revenue for r in todays),
                "tax_today": sum(r.tax for r in todays),
                "last_receipt": last.get(key),
                "silent": key in silent,
            }
        )
    days = [
        {
            "day": datetime.fromtimestamp(r.day_ms / 1000, ZoneInfo(timezone)).date().isoformat(),
            "gateway": r.gateway,
            "device": r.device,
            "site": sites.get((r.gateway, r.device)),
            "count": r.count,
            "revenue": r.revenue,
            "tax": r.tax,
        }
        for r in sorted(rows, key=lambda r: (-r.day_ms, r.gateway, r.device))
    ]
    return {"boxes": per_box, "days": days, "timezone": timezone, "problems": problems.messages}


# network


def network(central: Central) -> dict[str, Any]:
    """Each check's ``up`` and latency; the latency only when it is as fresh as ``up``
    (a check that failed has none), with the latest error when it is newer."""
    problems = Problems()
    targets = []
    latest: dict[str, list[Any]] = {}
    errors: dict[str, dict[tuple[str, str], tuple[int, str]]] = {}
    for d in _devices_by_profile(central, "network/"):
        gw = d["gateway"]
        if gw not in latest:
            latest[gw] = problems.run("latest", lambda gw=gw: central.queries.latest(gw), [])
            errors[gw] = problems.run(
                "errors", lambda gw=gw: reads.latest_errors(central.queries, gw), {}
            )
        values = {r.metric: r for r in latest[gw] if r.device == d["id"]}
        up = values.get("up")
        latency = next((values[m] for m in LATENCY_METRICS if m in values), None)
        if latency is not None and up is not None and latency.ts < up.ts:
            latency = None
        failures = [e for (dev, _), e in errors[gw].items() if dev == d["id"]]
        error = max(failures) if failures else None
        if error is not None and up is not None and error[0] < up.ts:
            error = None
        targets.append(
            {
                **d,
                "up": None if up is None else bool(up.value),
                "checked": up.ts if up else None,
                "latency": None if latency is None else latency.value,
                "error": error[1] if error else None,
            }
        )
    return {"targets": targets, "problems": problems.messages}


# incidents, dead letters, deliveries


def incidents(central: Central, now: float) -> dict[str, Any]:
    alerts = central.alerts
    firing = alerts.incidents.search(status="firing", limit=200)
    resolved = alerts.incidents.search(status="resolved", limit=30)
    return {
        "firing": [{**r, "state": alerts.state_of(r, now)} for r in firing],
        "resolved": [{**r, "state": "resolved"} for r in resolved],
    }


def dead_letters(central: Central) -> list[dict[str, Any]]:
    return central.registry.dead_letters(100)


def deliveries(central: Central) -> list[dict[str, Any]]:
    return central.alerts.outbox.search(limit=100)


def ago(ts: float | None, now: float | None = None) -> str:
    """``12 s``, ``5 min``, ``3 h``, ``2 d`` since ``ts`` (seconds)."""
    if ts is None:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
