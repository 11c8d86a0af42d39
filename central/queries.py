r"""Reading back from InfluxDB for the API: the latest value per metric and aggregated series.

InfluxDB 1.x (``influx.api: v1``) through ``GET /query`` with InfluxQL. Every name
a caller gives goes into the query quoted and escaped (``quote_ident`` /
``quote_literal``), never pasted raw; times and bucket sizes are numbers we format.

InfluxDB 2.x (``v2``) through ``POST /api/v2/query`` with Flux, by influxdb-client's
query API (annotated CSV parsed into tables). Every string a caller gives goes in
as a Flux string literal escaped by ``quote_flux`` (``\\``, ``\"``, every ``$`` as
the byte ``\x24`` so no ``${...}`` interpolation can run, control characters as
``\n`` or ``\xNN``); times, durations and numbers are ones we format.
Flux bind parameters (``params=`` of influxdb-client's query API) would be nicer,
but InfluxDB documents them for InfluxDB Cloud only, and Pantau must work with the
InfluxDB 2 OSS a city's data center runs. Escaping works on every Flux server.

Both give the same answers: ``Latest`` rows and ``Bucket`` rows with the bucket
start aligned to whole multiples of ``every`` since the epoch, as InfluxQL does.
``latest(..., text=True)`` adds the text readings (``<measurement>_text``, strings)
to the numeric ones (``<measurement>``); ``series`` is numeric only.

Exceptions::

    QueryError            InfluxDB answered with an error, something unreadable, or not at all
    └── QueryUnsupported  not available for this InfluxDB API version
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from central.config import InfluxSection

if TYPE_CHECKING:
    from influxdb_client.client.flux_table import TableList


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


def text_measurement(measurement: str) -> str:
    """Where central stores the text readings of ``measurement`` (lineprotocol.Encoder)."""
    return f"{measurement}_text"


def merge_latest(numeric: list[Latest], text: list[Latest]) -> list[Latest]:
    """Numeric and text latest rows as one list by (device, metric). A metric in both
    (its profile changed its type) shows its newer value; at the same time the number."""
    if not text:
        return numeric
    newest = {(r.device, r.metric): r for r in numeric}
    for row in text:
        have = newest.get((row.device, row.metric))
        if have is None or row.ts > have.ts:
            newest[(row.device, row.metric)] = row
    return sorted(newest.values(), key=lambda item: (item.device, item.metric))


@dataclass(frozen=True)
class Bucket:
    ts: int  # bucket start, ms
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Queries:
    """Reads against the database (v1, InfluxQL) or bucket (v2, Flux) central writes to."""

    def __init__(self, config: InfluxSection) -> None:
        self.config = config
        self._client: httpx.Client | None = None
        self._flux: FluxQueries | None = None
        if config.api == "v1":
            auth = None
            if config.username:
                auth = httpx.BasicAuth(config.username, config.secret("password") or "")
            self._client = httpx.Client(base_url=config.url, timeout=config.timeout, auth=auth)
        else:
            self._flux = FluxQueries(config)

    @property
    def flux(self) -> "FluxQueries | None":
        """The Flux reader with ``influx.api: v2``; None with v1 (InfluxQL)."""
        return self._flux

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._flux is not None:
            self._flux.close()

    def _where(self, gateway: str, device: str | None) -> str:
        where = f"{quote_ident('gateway')} = {quote_literal(gateway)}"
        if device is not None:
            where += f" AND {quote_ident('device')} = {quote_literal(device)}"
        return where

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; the results (one per statement)."""
        if self._client is None:
            raise QueryUnsupported("InfluxQL needs influx.api: v1; with v2 reads use Flux")
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

    def latest(
        self, gateway: str, device: str | None = None, *, text: bool = False
    ) -> list[Latest]:
        """The last stored value of every metric of ``gateway`` (one ``device`` or all);
        with ``text``, its text readings too (values as strings, ``merge_latest``).

        v1, two round trips: ``LAST(*)`` finds the metrics that have values, then one
        ``LAST(<metric>)`` statement per metric gives each its own timestamp (with
        ``text``, each round trip asks both measurements)."""
        if self._flux is not None:
            return self._flux.latest(gateway, device, text=text)
        numeric = self.config.measurement
        measurements = [numeric, text_measurement(numeric)] if text else [numeric]
        where = self._where(gateway, device)
        first = self.query(
            ";".join(
                f'SELECT LAST(*) FROM {quote_ident(m)} WHERE {where} GROUP BY "device"'
                for m in measurements
            )
        )
        wanted: list[tuple[str, str]] = []  # (measurement, metric)
        for measurement, result in zip(measurements, first, strict=True):
            metrics: set[str] = set()
            for series in result.get("series") or []:
                columns = series["columns"]
                for row in series["values"]:
                    for column, value in zip(columns, row, strict=True):
                        if column.startswith("last_") and value is not None:
                            metrics.add(column[len("last_") :])
            wanted += [(measurement, metric) for metric in sorted(metrics)]
        if not wanted:
            return []
        statements = ";".join(
            f"SELECT LAST({quote_ident(metric)}) FROM {quote_ident(measurement)} "
            f'WHERE {where} GROUP BY "device"'
            for measurement, metric in wanted
        )
        out: dict[str, list[Latest]] = {m: [] for m in measurements}
        for (measurement, metric), result in zip(wanted, self.query(statements), strict=True):
            for series in result.get("series") or []:
                device_name = (series.get("tags") or {}).get("device", "")
                for ts, value in series["values"]:
                    if value is not None:
                        out[measurement].append(Latest(device_name, metric, value, int(ts)))
        rows = sorted(out[numeric], key=lambda item: (item.device, item.metric))
        return merge_latest(rows, out[measurements[1]] if text else [])

    def series(
        self, gateway: str, device: str, metric: str, *, start_ms: int, end_ms: int, every_ms: int
    ) -> list[Bucket]:
        """Mean, min, max and count of ``metric`` per ``every_ms`` bucket in [start, end)."""
        if self._flux is not None:
            return self._flux.series(
                gateway, device, metric, start_ms=start_ms, end_ms=end_ms, every_ms=every_ms
            )
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


# InfluxDB 2.x: Flux


def quote_flux(text: str) -> str:
    r"""A Flux string literal: double-quoted; ``\`` and ``"`` escaped by a backslash;
    every ``$`` as the byte escape ``\x24``; control characters as ``\n``, ``\r``,
    ``\t`` or ``\xNN`` (a control character's UTF-8 is that one byte). Nothing in
    ``text`` can end the literal or run an expression.

    Not ``\${`` for a ``$`` before ``{``: Flux's scanner reads a ``$`` and the
    character after it as one (its ``dollar_value``), so a raw ``$`` before any
    escape swallows that escape's backslash (``$\"`` would end the literal, ``$\${``
    would interpolate). With no raw ``$`` in the literal that cannot happen.
    (libflux/flux-core/src/scanner/scanner.rl in influxdata/flux.)"""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "$":
            out.append("\\x24")
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def flux_time(ms: int) -> str:
    """A Flux time literal (RFC 3339, UTC) for ``ms`` since the epoch."""
    at = EPOCH + timedelta(milliseconds=int(ms))
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATS = ("mean", "min", "max", "count")
NUMERIC, TEXT = "numeric", "text"  # the results of latest_flux(..., text=True)


def ms_of(value: Any, what: str) -> int:
    if not isinstance(value, datetime):
        raise QueryError(f"InfluxDB answered a row without a valid {what}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(milliseconds=1)


class FluxQueries:
    """Flux reads through influxdb-client's query API (``POST /api/v2/query``)."""

    def __init__(self, config: InfluxSection) -> None:
        from influxdb_client import InfluxDBClient

        self.config = config
        self._client = InfluxDBClient(
            url=config.url,
            token=config.secret("token") or "",
            org=config.org or "",
            timeout=int(config.timeout * 1000),
            enable_gzip=False,
        )
        self._api = self._client.query_api()

    def close(self) -> None:
        self._client.close()

    def source(self) -> str:
        """``from(bucket: ...)``; the range and filters come next."""
        return f"from(bucket: {quote_flux(self.config.bucket or '')})"

    def _filter(
        self,
        gateway: str,
        device: str | None,
        metric: str | None = None,
        measurement: str | None = None,
    ) -> str:
        if measurement is None:
            measurement = self.config.measurement
        parts = [f"r._measurement == {quote_flux(measurement)}"]
        if metric is not None:
            parts.append(f"r._field == {quote_flux(metric)}")
        parts.append(f"r.gateway == {quote_flux(gateway)}")
        if device is not None:
            parts.append(f"r.device == {quote_flux(device)}")
        return f"  |> filter(fn: (r) => {' and '.join(parts)})\n"

    def _newest(self, measurement: str, gateway: str, device: str | None) -> str:
        return (
            f"{self.source()}\n"
            "  |> range(start: 0, stop: 1d)\n"
            f"{self._filter(gateway, device, measurement=measurement)}"
            "  |> last()\n"
            '  |> group(columns: ["device", "_field"])\n'
            '  |> sort(columns: ["_time"])\n'
            "  |> last()\n"
            '  |> keep(columns: ["device", "_field", "_value", "_time"])\n'
        )

    def latest_flux(self, gateway: str, device: str | None, *, text: bool = False) -> str:
        """The last value of each (device, metric): ``last()`` per series (pushed down
        to storage), then the newest of those per device and field, whatever the
        ``site`` tag. ``stop: 1d`` (now + 1 day) keeps readings from a gateway
        whose clock runs a little ahead. With ``text``, the same of the text
        measurement follows, the two yielded as results ``numeric`` and ``text``
        (one table can't hold a float and a string ``_value``)."""
        numeric = self._newest(self.config.measurement, gateway, device)
        if not text:
            return numeric
        texts = self._newest(text_measurement(self.config.measurement), gateway, device)
        return f'{numeric}  |> yield(name: "{NUMERIC}")\n{texts}  |> yield(name: "{TEXT}")\n'

    def series_flux(
        self, gateway: str, device: str, metric: str, *, start_ms: int, end_ms: int, every_ms: int
    ) -> str:
        """One table of the metric's points (every ``site`` merged by ``group()``),
        aggregated four times by ``aggregateWindow`` and yielded as results ``mean``,
        ``min``, ``max``, ``count``. Windows are aligned to the epoch like InfluxQL's
        ``GROUP BY time``; ``timeSrc: "_start"`` stamps each with its start (the first
        one cut to ``start``: ``_bucket_start`` aligns it back)."""
        every = f"{int(every_ms)}ms"
        head = (
            "data =\n"
            f"  {self.source()}\n"
            f"  |> range(start: {flux_time(start_ms)}, stop: {flux_time(end_ms)})\n"
            f"{self._filter(gateway, device, metric)}"
            "  |> group()\n"
        )
        tails = "".join(
            f"data\n  |> aggregateWindow(every: {every}, fn: {fn}, "
            f'timeSrc: "_start", createEmpty: false)\n'
            f'  |> yield(name: "{fn}")\n'
            for fn in STATS
        )
        return head + tails

    def run(self, flux: str) -> "TableList":
        """Run ``flux``; InfluxDB's tables. Every failure is a ``QueryError``."""
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.flux_csv_parser import (
            FluxCsvParserException,
            FluxQueryException,
        )
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return self._api.query(flux, org=self.config.org)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None) or getattr(exc.response, "status", "?")
            message = exc.message
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            raise QueryError(f"InfluxDB answered {status}: {str(message).strip()[:300]}") from None
        except FluxQueryException as exc:
            raise QueryError(f"InfluxDB: query failed: {str(exc.message)[:300]}") from None
        except (Urllib3Error, OSError) as exc:
            raise QueryError(f"InfluxDB unreachable at {self.config.url}: {exc}") from None
        except (FluxCsvParserException, ValueError, IndexError, KeyError, TypeError) as exc:
            raise QueryError(f"InfluxDB answered unreadable CSV: {exc}") from None

    def latest(
        self, gateway: str, device: str | None = None, *, text: bool = False
    ) -> list[Latest]:
        out: list[Latest] = []
        texts: list[Latest] = []
        for table in self.run(self.latest_flux(gateway, device, text=text)):
            for record in table.records:
                values = record.values
                metric, value = values.get("_field"), values.get("_value")
                if not isinstance(metric, str):
                    raise QueryError("InfluxDB answered a row without a valid _field")
                if value is None:
                    continue
                is_text = text and values.get("result") == TEXT
                if not isinstance(value, str if is_text else bool | int | float | str):
                    raise QueryError(f"InfluxDB answered a {type(value).__name__} for {metric}")
                device_name = values.get("device")
                (texts if is_text else out).append(
                    Latest(
                        device_name if isinstance(device_name, str) else "",
                        metric,
                        value,
                        ms_of(values.get("_time"), "_time"),
                    )
                )
        out.sort(key=lambda item: (item.device, item.metric))
        return merge_latest(out, texts)

    def series(
        self, gateway: str, device: str, metric: str, *, start_ms: int, end_ms: int, every_ms: int
    ) -> list[Bucket]:
        flux = self.series_flux(
            gateway, device, metric, start_ms=start_ms, end_ms=end_ms, every_ms=every_ms
        )
        every = max(int(every_ms), 1)
        stats: dict[int, dict[str, Any]] = {}
        for table in self.run(flux):
            for record in table.records:
                values = record.values
                stat = values.get("result")
                if stat not in STATS:
                    raise QueryError(f"InfluxDB answered an unexpected result {stat!r}")
                ts = ms_of(values.get("_time"), "_time")
                stats.setdefault(ts - ts % every, {})[stat] = values.get("_value")
        return [
            Bucket(
                ts,
                _number(row.get("mean")),
                _number(row.get("min")),
                _number(row.get("max")),
                int(_number(row.get("count")) or 0),
            )
            for ts, row in sorted(stats.items())
        ]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"InfluxDB answered {type(value).__name__} where a number belongs")
    return float(value)


def make_queries(config: InfluxSection) -> Queries:
    return Queries(config)
