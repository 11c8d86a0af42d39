"""What the dashboard reads from InfluxDB beyond the API's ``latest`` and ``series``:
latest reading errors (quality), last-hour sparklines, a metric's recent change,
tapping-box receipts per day. InfluxQL (``influx.api: v1``) through
``Queries.query``, every name quoted; with v2 these raise ``QueryUnsupported`` and
the pages show what they can without them.
"""

from dataclasses import dataclass
from typing import Any

from central.queries import Queries, quote_ident, quote_literal

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


def _errors_measurement(queries: Queries) -> str:
    measurement = queries.config.measurement
    return "reading_errors" if measurement == "readings" else f"{measurement}_errors"


def sparklines(
    queries: Queries, gateway: str, start_ms: int, end_ms: int, every_ms: int
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(device, metric) → [(bucket ms, mean)] of every numeric metric, one query."""
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
    return out


def change(queries: Queries, gateway: str, device: str, metric: str, since_ms: int) -> float | None:
    """Last minus first value of ``metric`` since ``since_ms`` (None without two values)."""
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


def receipts(queries: Queries, since_ms: int, timezone: str) -> list[Receipts]:
    """Receipt count, revenue (sum of ``total``) and tax per box per day in ``timezone``."""
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
    return out


def last_receipts(queries: Queries) -> dict[tuple[str, str], int]:
    """(gateway, device) → ms of the latest receipt event."""
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
