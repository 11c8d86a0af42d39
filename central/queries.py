"""Reading back from InfluxDB for the API: the latest value per metric and aggregated series.

InfluxDB 1.x (``influx.api: v1``) through ``GET /query`` with InfluxQL. Every name
a caller gives goes into the query quoted and escaped (``quote_ident`` /
``quote_literal``), never pasted raw; times and bucket sizes are numbers we format.
InfluxDB 2.x (``v2``) would need Flux: not done yet, so those calls raise
``QueryUnsupported`` (the API answers 501).

Exceptions::

    QueryError            InfluxDB answered with an error or not at all
    └── QueryUnsupported  not available for this InfluxDB API version
"""

from dataclasses import dataclass
from typing import Any

import httpx

from central.config import InfluxSection


class QueryError(Exception):
    pass


class QueryUnsupported(QueryError):
    pass


def quote_ident(name: str) -> str:
    """An InfluxQL identifier: double-quoted, with ``\\`` and ``"`` escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def quote_literal(text: str) -> str:
    """An InfluxQL string literal: single-quoted, with ``\\`` and ``'`` escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


@dataclass(frozen=True)
class Latest:
    device: str
    metric: str
    value: Any
    ts: int  # ms


@dataclass(frozen=True)
class Bucket:
    ts: int  # bucket start, ms
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Queries:
    """InfluxQL reads against the database central writes to."""

    def __init__(self, config: InfluxSection) -> None:
        self.config = config
        self._client: httpx.Client | None = None
        if config.api == "v1":
            auth = None
            if config.username:
                auth = httpx.BasicAuth(config.username, config.secret("password") or "")
            self._client = httpx.Client(base_url=config.url, timeout=config.timeout, auth=auth)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _where(self, gateway: str, device: str | None) -> str:
        where = f"{quote_ident('gateway')} = {quote_literal(gateway)}"
        if device is not None:
            where += f" AND {quote_ident('device')} = {quote_literal(device)}"
        return where

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; the results (one per statement)."""
        if self._client is None:
            raise QueryUnsupported(
                "reading back needs InfluxQL (influx.api: v1); Flux for v2 is not done yet"
            )
        params = {"db": self.config.database or "", "q": q, "epoch": "ms"}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        try:
            resp = self._client.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise QueryError(f"InfluxDB unreachable at {self.config.url}: {exc}") from None
        if resp.status_code >= 300:
            raise QueryError(f"InfluxDB answered {resp.status_code}: {resp.text.strip()[:300]}")
        results: list[dict[str, Any]] = resp.json().get("results", [])
        for result in results:
            if "error" in result:
                raise QueryError(f"InfluxDB: {result['error']}")
        return results

    def latest(self, gateway: str, device: str | None = None) -> list[Latest]:
        """The last stored value of every metric of ``gateway`` (one ``device`` or all).

        Two round trips: ``LAST(*)`` finds the metrics that have values, then one
        ``LAST(<metric>)`` statement per metric gives each its own timestamp."""
        measurement = quote_ident(self.config.measurement)
        where = self._where(gateway, device)
        first = self.query(f'SELECT LAST(*) FROM {measurement} WHERE {where} GROUP BY "device"')
        metrics: set[str] = set()
        for series in first[0].get("series") or []:
            columns = series["columns"]
            for row in series["values"]:
                for column, value in zip(columns, row, strict=True):
                    if column.startswith("last_") and value is not None:
                        metrics.add(column[len("last_") :])
        if not metrics:
            return []
        ordered = sorted(metrics)
        statements = ";".join(
            f'SELECT LAST({quote_ident(m)}) FROM {measurement} WHERE {where} GROUP BY "device"'
            for m in ordered
        )
        out: list[Latest] = []
        for metric, result in zip(ordered, self.query(statements), strict=True):
            for series in result.get("series") or []:
                device_name = (series.get("tags") or {}).get("device", "")
                for ts, value in series["values"]:
                    if value is not None:
                        out.append(Latest(device_name, metric, value, int(ts)))
        out.sort(key=lambda item: (item.device, item.metric))
        return out

    def series(
        self, gateway: str, device: str, metric: str, *, start_ms: int, end_ms: int, every_ms: int
    ) -> list[Bucket]:
        """Mean, min, max and count of ``metric`` per ``every_ms`` bucket in [start, end)."""
        measurement = quote_ident(self.config.measurement)
        field = quote_ident(metric)
        q = (
            f"SELECT MEAN({field}), MIN({field}), MAX({field}), COUNT({field}) "
            f"FROM {measurement} WHERE {self._where(gateway, device)} "
            f"AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms "
            f"GROUP BY time({int(every_ms)}ms) fill(none)"
        )
        out: list[Bucket] = []
        for series in self.query(q)[0].get("series") or []:
            for ts, mean, low, high, count in series["values"]:
                out.append(Bucket(int(ts), mean, low, high, int(count or 0)))
        return out


def make_queries(config: InfluxSection) -> Queries:
    return Queries(config)
