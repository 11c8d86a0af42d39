"""What the dashboard reads from InfluxDB beyond the API's ``latest`` and ``series``:
latest reading errors (quality), last-hour sparklines, a metric's recent change,
tapping-box receipts per day.

InfluxQL (``influx.api: v1``) through ``Queries.query``, every name quoted. With
``v2``, Flux (through ``Queries.flux``, every name a ``quote_flux`` string literal)
giving the same answers: the same windows (aligned to the epoch, or to local
midnight for days, as InfluxQL's ``GROUP BY time`` and ``tz()``), the same
aggregates and selectors, every ``site`` of a series merged as InfluxQL merges the
series it does not group by.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from central.queries import (
    FluxQueries,
    Queries,
    QueryError,
    flux_time,
    ms_of,
    quote_flux,
    quote_ident,
    quote_literal,
)

RECEIPT = "receipt"


@dataclass(frozen=True)
class Receipts:
    gateway: str
    device: str
    day_ms: int  # start of the day in the site's time zone
    count: int
    revenue: float
    tax: float


def _where(gateway: str, device: str | None = None) -> str:
    out = f"{quote_ident('gateway')} = {quote_literal(gateway)}"
    if device is not None:
        out += f" AND {quote_ident('device')} = {quote_literal(device)}"
    return out


def _series(result: dict[str, Any]) -> list[dict[str, Any]]:
    series: list[dict[str, Any]] = result.get("series") or []
    return series


def latest_errors(queries: Queries, gateway: str) -> dict[tuple[str, str], tuple[int, str]]:
    """(device, metric) → (ms, error) of the latest bad-quality reading."""
    flux = queries.flux
    if flux is not None:
        return _latest_errors_v2(flux, gateway)
    measurement = quote_ident(_errors_measurement(queries))
    q = (
        f"SELECT LAST({quote_ident('error')}) FROM {measurement} WHERE {_where(gateway)} "
        'GROUP BY "device", "metric"'
    )
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for series in _series(queries.query(q)[0]):
        tags = series.get("tags") or {}
        for ts, error in series["values"]:
            out[(tags.get("device", ""), tags.get("metric", ""))] = (int(ts), str(error))
    return out


def _errors_measurement(queries: Queries | FluxQueries) -> str:
    measurement = queries.config.measurement
    return "reading_errors" if measurement == "readings" else f"{measurement}_errors"


def latest_errors_flux(flux: FluxQueries, gateway: str) -> str:
    """The newest ``error`` per (device, metric) whatever the ``site``: ``last()`` per
    series (pushed down to storage), then the newest of those. ``stop: 1d``, as
    InfluxQL without a time bound takes points ahead of now."""
    condition = (
        f"r._measurement == {quote_flux(_errors_measurement(flux))}"
        f' and r._field == "error" and r.gateway == {quote_flux(gateway)}'
    )
    return _newest_flux(flux, condition, ["device", "metric"])


def _newest_flux(flux: FluxQueries, condition: str, by: list[str]) -> str:
    group = ", ".join(quote_flux(name) for name in by)
    return (
        f"{flux.source()}\n"
        "  |> range(start: 0, stop: 1d)\n"
        f"  |> filter(fn: (r) => {condition})\n"
        "  |> last()\n"
        f"  |> group(columns: [{group}])\n"
        '  |> sort(columns: ["_time"])\n'
        "  |> last()\n"
        f'  |> keep(columns: [{group}, "_time", "_value"])\n'
    )


def _tag(values: dict[str, Any], name: str) -> str:
    value = values.get(name)
    return value if isinstance(value, str) else ""


def _latest_errors_v2(flux: FluxQueries, gateway: str) -> dict[tuple[str, str], tuple[int, str]]:
    out: dict[tuple[str, str], tuple[int, str]] = {}
    for table in flux.run(latest_errors_flux(flux, gateway)):
        for record in table.records:
            values = record.values
            error = values.get("_value")
            if error is None:
                continue
            key = (_tag(values, "device"), _tag(values, "metric"))
            out[key] = (ms_of(values.get("_time"), "_time"), str(error))
    return out


def sparklines(
    queries: Queries, gateway: str, start_ms: int, end_ms: int, every_ms: int
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(device, metric) → [(bucket ms, mean)] of every numeric metric, one query;
    buckets aligned to whole ``every_ms`` since the epoch, oldest first."""
    flux = queries.flux
    if flux is not None:
        return _sparklines_v2(flux, gateway, start_ms, end_ms, every_ms)
    q = (
        f"SELECT MEAN(*) FROM {quote_ident(queries.config.measurement)} "
        f"WHERE {_where(gateway)} AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms "
        f'GROUP BY time({int(every_ms)}ms), "device" fill(none)'
    )
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for series in _series(queries.query(q)[0]):
        device = (series.get("tags") or {}).get("device", "")
        columns = series["columns"]
        for row in series["values"]:
            for column, value in zip(columns[1:], row[1:], strict=True):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metric = column.removeprefix("mean_")
                    out.setdefault((device, metric), []).append((int(row[0]), float(value)))
    for points in out.values():
        points.sort()
    return out


def sparklines_flux(
    flux: FluxQueries, gateway: str, start_ms: int, end_ms: int, every_ms: int
) -> str:
    """One table per (device, metric), whatever the ``site``, averaged per window by
    ``aggregateWindow`` (stamped with the window's start: the first one cut to
    ``start``, which ``_sparklines_v2`` aligns back to the epoch like InfluxQL)."""
    return (
        f"{flux.source()}\n"
        f"  |> range(start: {flux_time(start_ms)}, stop: {flux_time(end_ms)})\n"
        f"  |> filter(fn: (r) => r._measurement == {quote_flux(flux.config.measurement)}"
        f" and r.gateway == {quote_flux(gateway)})\n"
        '  |> group(columns: ["device", "_field"])\n'
        f"  |> aggregateWindow(every: {int(every_ms)}ms, fn: mean, "
        'timeSrc: "_start", createEmpty: false)\n'
        '  |> keep(columns: ["device", "_field", "_time", "_value"])\n'
    )


def _sparklines_v2(
    flux: FluxQueries, gateway: str, start_ms: int, end_ms: int, every_ms: int
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    every = max(int(every_ms), 1)
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for table in flux.run(sparklines_flux(flux, gateway, start_ms, end_ms, every_ms)):
        for record in table.records:
            values = record.values
            value = values.get("_value")
            if not _is_number(value):
                continue  # as MEAN(*) leaves out what is not a number
            metric = values.get("_field")
            if not isinstance(metric, str):
                raise QueryError("InfluxDB answered a row without a valid _field")
            ts = ms_of(values.get("_time"), "_time")
            out.setdefault((_tag(values, "device"), metric), []).append(
                (ts - ts % every, float(value))
            )
    for points in out.values():
        points.sort()
    return out


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def change(queries: Queries, gateway: str, device: str, metric: str, since_ms: int) -> float | None:
    """Last minus first value of ``metric`` since ``since_ms`` (None without two values)."""
    flux = queries.flux
    if flux is not None:
        return _change_v2(flux, gateway, device, metric, since_ms)
    field = quote_ident(metric)
    q = (
        f"SELECT FIRST({field}), LAST({field}), COUNT({field}) "
        f"FROM {quote_ident(queries.config.measurement)} "
        f"WHERE {_where(gateway, device)} AND time >= {int(since_ms)}ms"
    )
    for series in _series(queries.query(q)[0]):
        for _, first, last, count in series["values"]:
            if count and count > 1 and isinstance(first, int | float):
                return float(last) - float(first)
    return None


def change_flux(flux: FluxQueries, gateway: str, device: str, metric: str, since_ms: int) -> str:
    """The first and last value and the count of the metric since ``since_ms``, over
    every ``site``: ``first()`` / ``last()`` / ``count()`` per series (pushed down to
    storage), then the earliest first, the latest last and the sum of the counts.
    ``stop: 1d``, as InfluxQL without an upper time bound takes points ahead of now
    (a gateway whose clock runs a little ahead)."""
    condition = " and ".join(
        [
            f"r._measurement == {quote_flux(flux.config.measurement)}",
            f"r._field == {quote_flux(metric)}",
            f"r.gateway == {quote_flux(gateway)}",
            f"r.device == {quote_flux(device)}",
        ]
    )
    keep = '  |> keep(columns: ["_time", "_value"])\n'
    return (
        "data =\n"
        f"  {flux.source()}\n"
        f"  |> range(start: {flux_time(since_ms)}, stop: 1d)\n"
        f"  |> filter(fn: (r) => {condition})\n"
        "data\n  |> first()\n  |> group()\n"
        f'  |> sort(columns: ["_time"])\n  |> first()\n{keep}'
        '  |> yield(name: "first")\n'
        "data\n  |> last()\n  |> group()\n"
        f'  |> sort(columns: ["_time"])\n  |> last()\n{keep}'
        '  |> yield(name: "last")\n'
        "data\n  |> count()\n  |> group()\n  |> sum()\n"
        '  |> keep(columns: ["_value"])\n'
        '  |> yield(name: "count")\n'
    )


def _change_v2(
    flux: FluxQueries, gateway: str, device: str, metric: str, since_ms: int
) -> float | None:
    got: dict[str, Any] = {}
    for table in flux.run(change_flux(flux, gateway, device, metric, since_ms)):
        for record in table.records:
            result = record.values.get("result")
            if result not in ("first", "last", "count"):
                raise QueryError(f"InfluxDB answered an unexpected result {result!r}")
            got[result] = record.values.get("_value")
    first, last, count = got.get("first"), got.get("last"), got.get("count")
    if _is_number(count) and count > 1 and _is_number(first) and _is_number(last):
        return float(last) - float(first)
    return None


def receipts(
    queries: Queries, since_ms: int, timezone: str, now_ms: int | None = None
) -> list[Receipts]:
    """Receipt count, revenue (sum of ``total``) and tax per box per day in ``timezone``
    (days from its midnight), until now; ordered by gateway, device and day.
    ``now_ms``: the clock (v2 picks a fixed-offset day when ``timezone`` keeps one
    offset from ``since_ms`` to now)."""
    flux = queries.flux
    if flux is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return _receipts_v2(flux, since_ms, timezone, now)
    q = (
        f'SELECT COUNT("total"), SUM("total"), SUM("tax") FROM "events" '
        f'WHERE "kind" = {quote_literal(RECEIPT)} AND time >= {int(since_ms)}ms '
        f'GROUP BY time(1d), "gateway", "device" fill(none) tz({quote_literal(timezone)})'
    )
    out: list[Receipts] = []
    for series in _series(queries.query(q)[0]):
        tags = series.get("tags") or {}
        for ts, count, revenue, tax in series["values"]:
            if count:
                out.append(
                    Receipts(
                        tags.get("gateway", ""),
                        tags.get("device", ""),
                        int(ts),
                        int(count),
                        float(revenue or 0),
                        float(tax or 0),
                    )
                )
    out.sort(key=lambda r: (r.gateway, r.device, r.day_ms))
    return out


def day_location(timezone: str, since_ms: int, now_ms: int) -> str:
    """The Flux ``location`` of the days: ``timezone.fixed(offset: ...)`` when the zone
    keeps one UTC offset from ``since_ms`` to ``now_ms`` (every zone of Indonesia),
    else ``timezone.location(name: ...)``, which needs the time zone database on the
    InfluxDB server (some InfluxDB 2 images lack it: influxdata/influxdb#23248)."""
    zone = ZoneInfo(timezone)
    start = datetime.fromtimestamp(since_ms / 1000, UTC)
    end = datetime.fromtimestamp(max(now_ms, since_ms) / 1000, UTC) + timedelta(days=1)
    offsets = set()
    at = start
    while at <= end:  # hourly: no zone changes its offset twice within an hour
        offsets.add(at.astimezone(zone).utcoffset())
        at += timedelta(hours=1)
    if len(offsets) == 1:
        (offset,) = offsets
        if offset is not None:
            return f"timezone.fixed(offset: {int(offset.total_seconds())}s)"
    return f"timezone.location(name: {quote_flux(timezone)})"


def receipts_flux(flux: FluxQueries, since_ms: int, location: str) -> str:
    """Per (gateway, device) whatever the ``site``: the count of ``total`` per day and
    the sums of ``total`` and ``tax`` per day, days from midnight at ``location``
    (``aggregateWindow(location:)``, Flux 0.134+ = InfluxDB 2.1+), stamped with the
    day's start (the first one cut to ``since``: ``_receipts_v2`` aligns it back).
    No ``stop``: until now, as InfluxQL's ``GROUP BY time``."""
    window = f'every: 1d, location: {location}, timeSrc: "_start", createEmpty: false'
    return (
        'import "timezone"\n\n'
        "data =\n"
        f"  {flux.source()}\n"
        f"  |> range(start: {flux_time(since_ms)})\n"
        f'  |> filter(fn: (r) => r._measurement == "events" and r.kind == {quote_flux(RECEIPT)}'
        ' and (r._field == "total" or r._field == "tax"))\n'
        '  |> group(columns: ["gateway", "device", "_field"])\n'
        'data\n  |> filter(fn: (r) => r._field == "total")\n'
        f"  |> aggregateWindow({window}, fn: count)\n"
        '  |> yield(name: "count")\n'
        f"data\n  |> aggregateWindow({window}, fn: sum)\n"
        '  |> yield(name: "sum")\n'
    )


def _receipts_v2(flux: FluxQueries, since_ms: int, timezone: str, now_ms: int) -> list[Receipts]:
    zone = ZoneInfo(timezone)
    flux_text = receipts_flux(flux, since_ms, day_location(timezone, since_ms, now_ms))
    days: dict[tuple[str, str, int], dict[str, Any]] = {}
    for table in flux.run(flux_text):
        for record in table.records:
            values = record.values
            result, field = values.get("result"), values.get("_field")
            if result == "count":
                stat = "count"
            elif result == "sum" and field in ("total", "tax"):
                stat = field
            else:
                raise QueryError(f"InfluxDB answered an unexpected result {result!r}/{field!r}")
            value = values.get("_value")
            if value is not None and not _is_number(value):
                raise QueryError(f"InfluxDB answered {type(value).__name__} for the {stat}")
            at = datetime.fromtimestamp(ms_of(values.get("_time"), "_time") / 1000, zone)
            midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
            key = (
                _tag(values, "gateway"),
                _tag(values, "device"),
                int(midnight.timestamp() * 1000),
            )
            days.setdefault(key, {})[stat] = value
    return [
        Receipts(
            gateway,
            device,
            day_ms,
            int(stats["count"]),
            float(stats.get("total") or 0),
            float(stats.get("tax") or 0),
        )
        for (gateway, device, day_ms), stats in sorted(days.items())
        if stats.get("count")
    ]


def last_receipts(queries: Queries) -> dict[tuple[str, str], int]:
    """(gateway, device) → ms of the latest receipt event (one with ``bytes``)."""
    flux = queries.flux
    if flux is not None:
        return _last_receipts_v2(flux)
    q = (
        f'SELECT LAST("bytes") FROM "events" WHERE "kind" = {quote_literal(RECEIPT)} '
        'GROUP BY "gateway", "device"'
    )
    out: dict[tuple[str, str], int] = {}
    for series in _series(queries.query(q)[0]):
        tags = series.get("tags") or {}
        for ts, _ in series["values"]:
            out[(tags.get("gateway", ""), tags.get("device", ""))] = int(ts)
    return out


def last_receipts_flux(flux: FluxQueries) -> str:
    """The newest receipt's ``bytes`` per (gateway, device), whatever the ``site``."""
    condition = (
        f'r._measurement == "events" and r.kind == {quote_flux(RECEIPT)} and r._field == "bytes"'
    )
    return _newest_flux(flux, condition, ["gateway", "device"])


def _last_receipts_v2(flux: FluxQueries) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for table in flux.run(last_receipts_flux(flux)):
        for record in table.records:
            values = record.values
            key = (_tag(values, "gateway"), _tag(values, "device"))
            out[key] = ms_of(values.get("_time"), "_time")
    return out
