"""Writing line protocol to InfluxDB through either write API.

``v1``: ``POST /write?db=<database>&precision=ms`` (InfluxDB 1.x, Debian's 1.6.7).
``v2``: ``POST /api/v2/write?org=&bucket=&precision=ms`` with ``Authorization: Token``,
through influxdb-client's synchronous write API.

A failure carries its :class:`wire.retry.Outcome`: 5xx, 429, timeouts and connection
errors are ``RETRY``; 401, 403 and 404 (a wrong token, a missing database) are
``SETTING``: ingest holds and retries both (points are idempotent, so writing a batch
twice is harmless). 413 is ``TOO_LARGE`` (split the batch); any other 4xx (a field
type conflict, a line that doesn't parse) is ``REFUSED``: the content's fault.
"""

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Protocol, cast

import httpx

from central.config import InfluxSection
from wire.retry import classify, retry_after

log = logging.getLogger(__name__)


class WriteError(Exception):
    """``status`` None: no answer (unreachable, timed out). ``retry_after``: seconds
    from InfluxDB's (or a proxy's) ``Retry-After``."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = classify(status)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Whether waiting (or fixing a setting) can make the same write succeed."""
        return self.outcome.holds

    @property
    def reason(self) -> str:
        """A short label for metrics and ``/readyz``: the status, or ``unreachable``."""
        return str(self.status) if self.status is not None else "unreachable"


class Writer(Protocol):
    def write(self, body: bytes) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _raise_for(status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
    if status < 300:
        return
    detail = text.strip()[:500]
    after = retry_after(headers.get("Retry-After")) if headers else None
    raise WriteError(f"InfluxDB answered {status}: {detail}", status=status, retry_after=after)


def unreachable(url: str, exc: Exception) -> WriteError:
    """A connection failure: retryable, and said the same way everywhere."""
    return WriteError(f"InfluxDB unreachable at {url}: {exc}")


def _http_ping(client: httpx.Client, path: str, url: str) -> None:
    try:
        resp = client.get(path)
    except httpx.HTTPError as exc:
        raise unreachable(url, exc) from None
    _raise_for(resp.status_code, resp.text)


class V1Writer:
    def __init__(self, config: InfluxSection) -> None:
        self.config = config
        auth = None
        if config.username:
            auth = httpx.BasicAuth(config.username, config.secret("password") or "")
        self._client = httpx.Client(
            base_url=config.url, timeout=config.timeout, auth=auth, headers={"User-Agent": "pantau"}
        )
        self._params = {"db": config.database, "precision": "ms"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy

    def write(self, body: bytes) -> None:
        try:
            resp = self._client.post("/write", params=self._params, content=body)
        except httpx.HTTPError as exc:
            raise unreachable(self.config.url, exc) from None
        _raise_for(resp.status_code, resp.text, resp.headers)

    def ping(self) -> None:
        _http_ping(self._client, "/ping", self.config.url)

    def create_database(self) -> None:
        q = f'CREATE DATABASE "{self.config.database}"'
        try:
            resp = self._client.post("/query", data={"q": q})
        except httpx.HTTPError as exc:
            raise unreachable(self.config.url, exc) from None
        _raise_for(resp.status_code, resp.text)

    def close(self) -> None:
        self._client.close()


class V2Writer:
    """InfluxDB 2.x / 3.x / Cloud through influxdb-client's synchronous write API."""

    def __init__(self, config: InfluxSection) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config = config
        # the config model guarantees org and bucket for api v2
        self._org, self._bucket = config.org or "", config.bucket or ""
        self._client = InfluxDBClient(
            url=config.url,
            token=config.secret("token") or "",
            org=self._org,
            timeout=int(config.timeout * 1000),
            enable_gzip=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                write_precision=cast(WritePrecision, WritePrecision.MS),
            )
        except ApiException as exc:
            _raise_for(int(exc.status or 500), str(exc.body or exc.reason), exc.headers)
        except (Urllib3Error, OSError) as exc:
            raise unreachable(self.config.url, exc) from None

    def ping(self) -> None:
        with httpx.Client(timeout=self.config.timeout) as client:
            _http_ping(client, urllib.parse.urljoin(self.config.url, "/ping"), self.config.url)

    def close(self) -> None:
        self._api.close()
        self._client.close()


def make_writer(config: InfluxSection) -> V1Writer | V2Writer:
    return V1Writer(config) if config.api == "v1" else V2Writer(config)
