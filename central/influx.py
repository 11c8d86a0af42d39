"""Writing line protocol to InfluxDB through either write API.

``v1``: ``POST /write?db=<database>&precision=ms`` (InfluxDB 1.x, Debian's 1.6.7).
``v2``: ``POST /api/v2/write?org=&bucket=&precision=ms`` with ``Authorization: Token``,
through influxdb-client's synchronous write API.

Failures say whether a retry can help: 5xx, timeouts and connection errors are
retryable (points are idempotent, so writing a batch twice is harmless); 4xx
(a field type conflict, a bad point) is permanent.
"""

import logging
import urllib.parse
from typing import Protocol, cast

import httpx

from central.config import InfluxSection

log = logging.getLogger(__name__)


class WriteError(Exception):
    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Writer(Protocol):
    def write(self, body: bytes) -> None: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...


def _raise_for(status: int, text: str) -> None:
    if status < 300:
        return
    detail = text.strip()[:500]
    raise WriteError(
        f"InfluxDB answered {status}: {detail}", retryable=status >= 500, status=status
    )


def unreachable(url: str, exc: Exception) -> WriteError:
    """A connection failure: retryable, and said the same way everywhere."""
    return WriteError(f"InfluxDB unreachable at {url}: {exc}", retryable=True)


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
        _raise_for(resp.status_code, resp.text)

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
            _raise_for(int(exc.status or 500), str(exc.body or exc.reason))
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
