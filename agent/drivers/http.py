"""``http``: an HTTP(S) check of a city application, a camera's web page, a radio's UI.

Each poll sends one request (``GET`` by default, ``Connection: close``), reads
the answer (the body up to ``max_body`` bytes) and reports:

- ``up``: 1 when the status is one of ``expect_status`` (default: any 2xx or
  3xx) and, when ``body_regex`` is set, the body matches it; else 0 with the
  reason in the reading's ``error``. Always a good reading.
- ``status``: the HTTP status code (bad quality when no answer came).
- ``latency_ms``: from opening the connection to the end of the answer.
- ``cert_days_left`` (``https://`` only): days until the server's certificate
  expires, negative when it already has; read whether or not it was verified.

A small HTTP/1.1 client on asyncio streams: no extra library on the gateway.
Redirects are reported, not followed.
"""

import asyncio
import re
import ssl
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import msgspec

from agent.drivers._net import budget, describe, ms
from agent.drivers._netcert import CertError, not_after
from agent.drivers.base import (
    ConnectionBase,
    DeviceContext,
    Driver,
    DriverError,
    ProfileBase,
    Sample,
)
from wire import Duration
from wire.structs import Regex

MAX_HEADERS = 100
MAX_LINE = 8192


class BadResponse(Exception):
    pass


class Statuses(list[int]):
    """HTTP status codes: one (``200``) or a list (``[200, 301]``)."""

    @classmethod
    def parse(cls, value: Any) -> "Statuses":
        codes = cls()
        for given in value if isinstance(value, list) else [value]:
            # "200" from an environment variable is a number too
            code = int(given) if isinstance(given, str) and given.strip().isdigit() else given
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError(f"expected a status code or a list of them, got {code!r}")
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
            codes.append(code)
        return codes


class Url(str):
    """``http://host[:port]/path`` or ``https://...``; no credentials, no spaces."""

    @classmethod
    def parse(cls, value: Any) -> "Url":
        if not isinstance(value, str):
            raise ValueError(f"expected http://host/path or https://host/path, got {value!r}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http://host/path or https://host/path, got {value!r}")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}: {exc}") from None
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not supported")
        if any(c.isspace() for c in value):
            raise ValueError("the URL must not contain spaces (write them as %20)")
        return cls(value)


class HttpProfile(ProfileBase):
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: Statuses | None = None  # default: any 2xx or 3xx
    body_regex: Regex | None = None
    timeout: Duration = Duration(5.0)
    # bytes read for body_regex
    max_body: Annotated[int, msgspec.Meta(ge=0, le=16 << 20)] = 1 << 20


class HttpConnection(ConnectionBase):
    url: Url
    expect_status: Statuses | None = None  # overrides the profile; one code or a list
    body_regex: Regex | None = None  # overrides the profile
    verify_tls: bool = True  # False: accept self-signed or expired certificates
    ca_file: Path | None = None  # trust this CA (a city's own) instead of the system's
    timeout: Duration | None = None


class Answer:
    def __init__(self, status: int, body: bytes, cert_der: bytes | None) -> None:
        self.status = status
        self.body = body
        self.cert_der = cert_der


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise BadResponse("connection closed in the middle of the answer") from None
    except asyncio.LimitOverrunError:
        raise BadResponse("header line too long") from None
    if len(line) > MAX_LINE:
        raise BadResponse("header line too long")
    return line.rstrip(b"\r\n")


async def read_answer(reader: asyncio.StreamReader, head: bool, max_body: int) -> tuple[int, bytes]:
    """(status, body up to ``max_body`` bytes) of one HTTP/1.x answer."""
    status_line = await _line(reader)
    match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
    if match is None:
        raise BadResponse(f"not an HTTP answer: {status_line[:60]!r}")
    status = int(match[1])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await _line(reader)
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadResponse(f"bad header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadResponse("too many header lines")
    if head or status in (204, 304) or 100 <= status < 200:
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, await _chunked(reader, max_body)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadResponse("bad Content-Length") from None
        try:
            return status, await reader.readexactly(min(length, max_body))
        except asyncio.IncompleteReadError:
            raise BadResponse("answer shorter than its Content-Length") from None
    return status, await reader.read(max_body)


async def _chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = b""
    while len(body) < max_body:
        size_line = await _line(reader)
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise BadResponse(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            break
        try:
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise BadResponse("connection closed in the middle of a chunk") from None
    return body[:max_body]


class HttpDriver(Driver):
    name = "http"
    Profile = HttpProfile
    Connection = HttpConnection

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self._ssl: ssl.SSLContext | None = None

    @property
    def https(self) -> bool:
        return bool(urlsplit(self.connection.url).scheme == "https")

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ca = self.connection.ca_file
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
            if not self.connection.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        return self._ssl

    async def open(self) -> None:
        if self.https:
            try:
                self._context()
            except (OSError, ssl.SSLError) as exc:
                raise DriverError(f"cannot load ca_file {self.connection.ca_file}: {exc}") from None

    async def read(self, at: float) -> list[Sample]:
        parts = urlsplit(self.connection.url)
        host = parts.hostname or ""
        port = parts.port or (443 if self.https else 80)
        wait = budget(self.device.timeout, self.connection.timeout or self.profile.timeout)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(wait):
                answer = await self._exchange(host, port, parts)
        except TimeoutError:
            return self._down(f"no complete answer within {wait:g}s")
        except ssl.SSLCertVerificationError as exc:
            return self._down(f"TLS: {exc.verify_message or exc.reason}")
        except ssl.SSLError as exc:
            return self._down(f"TLS: {exc.reason or exc}")
        except OSError as exc:
            return self._down(f"{host}:{port}: {describe(exc)}")
        except BadResponse as exc:
            return self._down(f"bad answer: {exc}")
        latency = ms(time.perf_counter() - started)
        error = self._judge(answer)
        samples = [
            Sample("up", 0 if error else 1, error=error),
            Sample("status", answer.status),
            Sample("latency_ms", latency, "ms"),
        ]
        if self.https:
            samples.append(self._cert_days(answer.cert_der, at))
        return samples

    async def _exchange(self, host: str, port: int, parts: SplitResult) -> Answer:
        context = self._context() if self.https else None
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None, limit=MAX_LINE * 2
        )
        try:
            default = 443 if self.https else 80
            host_header = f"[{host}]" if ":" in host else host
            if port != default:
                host_header += f":{port}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            request = (
                f"{self.profile.method} {target} HTTP/1.1\r\nHost: {host_header}\r\n"
                "User-Agent: pantau-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii", "strict"))
            await writer.drain()
            cert = None
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                cert = ssl_object.getpeercert(binary_form=True)
            status, body = await read_answer(
                reader, self.profile.method == "HEAD", self.profile.max_body
            )
            return Answer(status, body, cert)
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel (3.11)
                    await writer.wait_closed()
            except (OSError, TimeoutError, ssl.SSLError):
                pass

    def _judge(self, answer: Answer) -> str | None:
        expected = self.connection.expect_status or self.profile.expect_status
        if expected is None:
            if not 200 <= answer.status < 400:
                return f"status {answer.status} is not 2xx or 3xx"
        elif answer.status not in expected:
            return f"status {answer.status} is not one of {expected}"
        pattern = self.connection.body_regex or self.profile.body_regex
        if pattern is not None:
            text = answer.body.decode("utf-8", "replace")
            if re.search(pattern, text) is None:
                return f"body does not match {pattern!r}"
        return None

    def _cert_days(self, der: bytes | None, at: float) -> Sample:
        if not der:
            return Sample("cert_days_left", None, "d", quality="bad", error="no certificate")
        try:
            expires = not_after(der)
        except CertError as exc:
            return Sample("cert_days_left", None, "d", quality="bad", error=str(exc))
        return Sample("cert_days_left", round((expires.timestamp() - at) / 86400.0, 3), "d")

    def _down(self, error: str) -> list[Sample]:
        samples = [Sample("up", 0, error=error)]
        samples += [
            Sample(metric, None, unit, quality="bad", error=error)
            for metric, unit in self.metrics()[1:]
        ]
        return samples

    def metrics(self) -> list[tuple[str, str | None]]:
        found: list[tuple[str, str | None]] = [("up", None), ("status", None), ("latency_ms", "ms")]
        if self.https:
            found.append(("cert_days_left", "d"))
        return found
