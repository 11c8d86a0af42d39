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

With ``points:`` in the profile, values are also read out of a JSON answer (a vehicle
counter's, a water-level logger's, a UPS web card's status page): each point names a
metric, a path into the document (``data.lanes[0].count``, see agent/drivers/_jsonbody.py)
and a type, with optional scale/offset, unit, ``invalid`` sentinels and ``counter``
(agent/counters.py, as for Modbus). A point that can't be read (no answer, an unexpected
status, a body that is not JSON or larger than ``max_body``, a missing key, a value of
another type) is a bad reading whose error starts with the point's path.

A small HTTP/1.1 client on asyncio streams: no extra library on the gateway.
Redirects are reported, not followed.
"""

import asyncio
import math
import re
import ssl
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import msgspec

from agent.counters import (
    CounterSpec,
    WrappingCounter,
    point_all_metric_names,
    point_metric_names,
)
from agent.drivers._jsonbody import JsonPath, PathError, ValueKind, find, steps, typed
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
from wire import Duration, ValueType
from wire.structs import Regex, Section

MAX_HEADERS = 100
MAX_LINE = 8192
CHECKS = ("up", "status", "latency_ms", "cert_days_left")  # the metrics every check gives
COUNTER_WRAP = 1 << 32  # a JSON count wraps here unless counter.wrap says otherwise


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


class HttpPoint(Section):
    """One value out of the JSON answer."""

    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    path: JsonPath
    type: ValueKind = "number"
    scale: float = 1.0  # number: value * scale + offset
    offset: float = 0.0
    unit: str | None = None
    invalid: list[float] | None = None  # numbers meaning "no reading" (before scale)
    counter: CounterSpec | None = None  # number: a count that wraps or resets

    def __post_init__(self) -> None:
        if not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale and offset must be finite numbers")
        if self.type != "number":
            given = [
                key
                for key, is_set in (
                    ("scale", self.scale != 1),
                    ("offset", self.offset != 0),
                    ("invalid", self.invalid is not None),
                    ("counter", self.counter is not None),
                )
                if is_set
            ]
            if given:
                raise ValueError(f"{', '.join(given)}: only for type number, not {self.type}")
        if self.counter is not None and (self.scale != 1 or self.offset != 0):
            raise ValueError("a counter uses counter.per_count, not scale/offset")

    def metric_names(self) -> list[tuple[str, str | None]]:
        return point_metric_names(self.metric, self.unit, self.counter)

    def all_metric_names(self) -> list[str]:
        return point_all_metric_names(self.metric, self.counter)


class HttpProfile(ProfileBase):
    method: Literal["GET", "HEAD"] = "GET"
    expect_status: Statuses | None = None  # default: any 2xx or 3xx
    body_regex: Regex | None = None
    timeout: Duration = Duration(5.0)
    # bytes of the body read for body_regex and points; a longer JSON answer is refused
    max_body: Annotated[int, msgspec.Meta(ge=0, le=16 << 20)] = 1 << 20
    points: list[HttpPoint] = msgspec.field(default_factory=list)  # values from a JSON answer

    def __post_init__(self) -> None:
        if self.points and self.method == "HEAD":
            raise ValueError("method: points are read from the body: use GET, not HEAD")
        if self.points and self.max_body == 0:
            raise ValueError("max_body: points are read from the body: it can't be 0")
        problems = []
        seen: dict[str, str] = dict.fromkeys(CHECKS, "the http check")
        for i, point in enumerate(self.points):
            for name in point.all_metric_names():
                if name in seen:
                    problems.append(f"points[{i}]: metric {name!r} already used by {seen[name]}")
                seen.setdefault(name, f"points[{i}]")
        if problems:
            raise ValueError("; ".join(problems))


class HttpConnection(ConnectionBase):
    url: Url
    expect_status: Statuses | None = None  # overrides the profile; one code or a list
    body_regex: Regex | None = None  # overrides the profile
    verify_tls: bool = True  # False: accept self-signed or expired certificates
    ca_file: Path | None = None  # trust this CA (a city's own) instead of the system's
    timeout: Duration | None = None


class Answer:
    def __init__(
        self, status: int, body: bytes, cert_der: bytes | None, whole: bool = True
    ) -> None:
        self.status = status
        self.body = body  # at most max_body bytes
        self.cert_der = cert_der
        self.whole = whole  # False: the body was longer than max_body


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


async def read_answer(
    reader: asyncio.StreamReader, head: bool, max_body: int
) -> tuple[int, bytes, bool]:
    """(status, body up to ``max_body`` bytes, whether that is the whole body) of one
    HTTP/1.x answer."""
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
        return status, b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(reader, max_body)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadResponse("bad Content-Length") from None
        if length < 0:
            raise BadResponse("bad Content-Length")
        try:
            body = await reader.readexactly(min(length, max_body + 1))
        except asyncio.IncompleteReadError:
            raise BadResponse("answer shorter than its Content-Length") from None
    else:
        body = await _until_closed(reader, max_body + 1)
    return status, body[:max_body], len(body) <= max_body


async def _until_closed(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = b""
    while len(body) < limit:
        part = await reader.read(limit - len(body))
        if not part:
            break
        body += part
    return body


async def _chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """Up to ``max_body + 1`` bytes of a chunked body (one more: it was longer)."""
    body = b""
    while len(body) <= max_body:
        size_line = await _line(reader)
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise BadResponse(f"bad chunk size {size_line[:20]!r}") from None
        if size < 0:
            raise BadResponse(f"bad chunk size {size_line[:20]!r}")
        if size == 0:
            break
        wanted = min(size, max_body + 1 - len(body))  # never hold more than that
        try:
            body += await reader.readexactly(wanted)
            if wanted < size:
                break
            await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise BadResponse("connection closed in the middle of a chunk") from None
    return body


class HttpDriver(Driver):
    name = "http"
    Profile = HttpProfile
    Connection = HttpConnection

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self.profile: HttpProfile
        self.connection: HttpConnection
        self._ssl: ssl.SSLContext | None = None
        self._paths = [steps(point.path) for point in self.profile.points]
        self._counters: dict[int, WrappingCounter] = {
            i: point.counter.counter(wrap=COUNTER_WRAP)
            for i, point in enumerate(self.profile.points)
            if point.counter is not None
        }

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
        status_error = self._status_error(answer)
        error = status_error or self._body_error(answer)
        samples = [
            Sample("up", 0 if error else 1, error=error),
            Sample("status", answer.status),
            Sample("latency_ms", latency, "ms"),
        ]
        if self.https:
            samples.append(self._cert_days(answer.cert_der, at))
        if self.profile.points:
            samples += self._points(answer, status_error, at)
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
            accept = "application/json" if self.profile.points else "*/*"
            request = (
                f"{self.profile.method} {target} HTTP/1.1\r\nHost: {host_header}\r\n"
                f"User-Agent: pantau-agent\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii", "strict"))
            await writer.drain()
            cert = None
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                cert = ssl_object.getpeercert(binary_form=True)
            status, body, whole = await read_answer(
                reader, self.profile.method == "HEAD", self.profile.max_body
            )
            return Answer(status, body, cert, whole)
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel (3.11)
                    await writer.wait_closed()
            except (OSError, TimeoutError, ssl.SSLError):
                pass

    def _status_error(self, answer: Answer) -> str | None:
        expected = self.connection.expect_status or self.profile.expect_status
        if expected is None:
            if not 200 <= answer.status < 400:
                return f"status {answer.status} is not 2xx or 3xx"
        elif answer.status not in expected:
            return f"status {answer.status} is not one of {expected}"
        return None

    def _body_error(self, answer: Answer) -> str | None:
        pattern = self.connection.body_regex or self.profile.body_regex
        if pattern is not None:
            text = answer.body.decode("utf-8", "replace")
            if re.search(pattern, text) is None:
                return f"body does not match {pattern!r}"
        return None

    def _points(self, answer: Answer, status_error: str | None, at: float) -> list[Sample]:
        """The profile's points out of the JSON answer; bad ones name their path."""
        document: Any = None
        why = status_error  # the same reason for every point, or None
        if why is None:
            if not answer.whole:
                why = f"the answer is larger than max_body ({self.profile.max_body} bytes)"
            elif not answer.body.strip():
                why = "the answer is empty, not JSON"
            else:
                try:
                    document = msgspec.json.decode(answer.body.removeprefix(b"\xef\xbb\xbf"))
                except msgspec.DecodeError as exc:
                    why = f"the answer is not JSON ({exc})"
                except RecursionError:
                    why = "the answer is not JSON we can read (nested too deep)"
        samples: list[Sample] = []
        for index, point in enumerate(self.profile.points):
            if why is not None:
                samples += self._bad(point, f"{point.path}: {why}")
                continue
            try:
                value = typed(find(document, self._paths[index]), point.type)
                samples += self._point_samples(index, point, value, at)
            except PathError as exc:
                samples += self._bad(point, f"{point.path}: {exc}")
        return samples

    def _point_samples(
        self, index: int, point: HttpPoint, value: int | float | bool | str, at: float
    ) -> list[Sample]:
        if isinstance(value, bool | str):
            return [Sample(point.metric, value, point.unit)]
        for sentinel in point.invalid or ():
            if value == sentinel:
                raise PathError(f"the device sent the 'no reading' value {value!r}")
        counter = self._counters.get(index)
        spec = point.counter
        if counter is None or spec is None:
            if point.scale != 1 or point.offset != 0:
                value = value * point.scale + point.offset
                if not math.isfinite(value):
                    raise PathError(f"{value} after scale and offset")
            return [Sample(point.metric, value, point.unit)]
        if isinstance(value, float):
            if not value.is_integer():
                raise PathError(f"a count is a whole number, got {value!r}")
            value = int(value)
        if not 0 <= value < counter.wrap:
            raise PathError(f"count {value} outside 0..{counter.wrap - 1}")
        return [Sample(point.metric, value, point.unit), *spec.samples(counter.update(value, at))]

    @staticmethod
    def _bad(point: HttpPoint, error: str) -> list[Sample]:
        return [Sample(m, None, u, quality="bad", error=error) for m, u in point.metric_names()]

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
        found += [name for point in self.profile.points for name in point.metric_names()]
        return found

    def reported_metrics(self) -> set[str]:
        moved = {p.counter.moved_metric for p in self.profile.points if p.counter}
        return super().reported_metrics() | {m for m in moved if m}

    def value_types(self) -> dict[str, ValueType]:
        types = super().value_types()
        for point in self.profile.points:
            types[point.metric] = point.type
        return types
