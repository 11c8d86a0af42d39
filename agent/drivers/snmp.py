"""``snmp``: SNMP v2c / v3 GET of the OIDs a profile lists (pysnmp 7, asyncio).

OIDs are numeric in the profile, so nothing is compiled from MIB files at run
time. Each point says what its value becomes (``kind``):

- ``value``: a number, times ``scale`` plus ``offset`` (UPS-MIB battery voltage
  comes in 0.1 V: ``scale: 0.1``). Text that is a number is read as one.
- ``rate``: a Counter32/Counter64 turned into a per-second rate, times
  ``scale`` (octets times 8 = bits/s), across counter wraps and device restarts
  (sysUpTime going back); see ``agent.drivers._rate``.
- ``flag``: 1 when the value is one of ``one_of`` (UPS output source 5 = battery
  → ``on_battery``), else 0.
- ``text``: the value as text (sysName, sysDescr).

A value listed in the point's ``invalid`` (compared before scaling: -100 for an
empty rectifier slot, 4294967295 for "unknown") gives a bad reading, as does an
OID the device does not have (noSuchObject, noSuchInstance, endOfMibView). No
answer at all (wrong address, community or user), or an error for the whole
request, fails the poll: every reading bad.
"""

import asyncio
import re
import time
from typing import Annotated, Any, Literal

import msgspec
from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto import rfc1902, rfc1905

from agent.drivers._net import Host, budget
from agent.drivers._rate import CounterRate
from agent.drivers.base import (
    ConnectionBase,
    DeviceContext,
    Driver,
    DriverError,
    ProfileBase,
    Sample,
)
from wire import Duration, ValueType
from wire.structs import Secret, Section, unique

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
_OID = re.compile(r"^\.?[0-2](\.\d+)+$")

AUTH = {
    "MD5": hlapi.usmHMACMD5AuthProtocol,
    "SHA": hlapi.usmHMACSHAAuthProtocol,
    "SHA224": hlapi.usmHMAC128SHA224AuthProtocol,
    "SHA256": hlapi.usmHMAC192SHA256AuthProtocol,
    "SHA384": hlapi.usmHMAC256SHA384AuthProtocol,
    "SHA512": hlapi.usmHMAC384SHA512AuthProtocol,
}
PRIV = {
    "DES": hlapi.usmDESPrivProtocol,
    "AES": hlapi.usmAesCfb128Protocol,
    "AES192": hlapi.usmAesBlumenthalCfb192Protocol,  # net-snmp's AES192
    "AES256": hlapi.usmAesBlumenthalCfb256Protocol,  # net-snmp's AES256
    "AES192C": hlapi.usmAesCfb192Protocol,  # Cisco's variant (net-snmp AES192C)
    "AES256C": hlapi.usmAesCfb256Protocol,  # Cisco's variant (net-snmp AES256C)
}
MISSING = {
    rfc1905.NoSuchObject: "noSuchObject",
    rfc1905.NoSuchInstance: "noSuchInstance",
    rfc1905.EndOfMibView: "endOfMibView",
}


class Oid(str):
    """A numeric OID (``1.3.6.1.2.1.1.3.0``; a leading dot is allowed and removed)."""

    @classmethod
    def parse(cls, value: Any) -> "Oid":
        if not isinstance(value, str) or not _OID.match(value):
            raise ValueError(
                f"{value!r} is not a numeric OID (write e.g. 1.3.6.1.2.1.1.3.0; MIB names are "
                "not looked up)"
            )
        return cls(value.lstrip("."))


class Version(str):
    """The SNMP version: ``2c`` or ``3`` (``3`` may be written as a number)."""

    @classmethod
    def parse(cls, value: Any) -> "Version":
        text = str(value).lower() if isinstance(value, int | float | str) else value
        if isinstance(value, bool) or text not in ("2c", "3"):
            raise ValueError(f"version must be '2c' or '3', got {value!r}")
        return cls(text)


class V3Key(Secret):
    """An SNMPv3 authentication or privacy passphrase: at least 8 characters."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: Any) -> "V3Key":
        key = Secret.parse(value).get_secret_value()
        if len(key) < 8:
            raise ValueError("SNMPv3 keys are at least 8 characters")
        return cls(key)


class SnmpPoint(Section):
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    oid: Oid
    index: Annotated[int, msgspec.Meta(ge=0)] | Literal["if_index"] | None = None  # OID suffix
    kind: Literal["value", "rate", "flag", "text"] = "value"
    scale: float = 1.0
    offset: float = 0.0
    one_of: list[int] = msgspec.field(default_factory=list)  # kind flag: values that mean 1
    invalid: list[float] = msgspec.field(default_factory=list)  # raw values: "no reading"
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "flag" and not self.one_of:
            raise ValueError("a flag point needs one_of: the values that mean 1 (e.g. [5])")
        if self.kind != "flag" and self.one_of:
            raise ValueError("one_of is only for kind: flag")


class SnmpProfile(ProfileBase):
    if_index: Annotated[int, msgspec.Meta(ge=1)] | None = None  # row for ``index: if_index``
    uptime_oid: Oid = Oid(SYS_UPTIME)  # read with rate points, to notice restarts
    timeout: Duration = Duration(2.0)
    max_oids: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20  # OIDs per GET request
    points: Annotated[list[SnmpPoint], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        unique("points", "metric", (point.metric for point in self.points))


class SnmpConnection(ConnectionBase):
    host: Host
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 161
    version: Version = Version("2c")
    community: Secret | None = None  # v2c
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=32)] | None = None  # v3
    auth_key: V3Key | None = None  # v3: at least 8 characters
    priv_key: V3Key | None = None  # v3: at least 8 characters
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    priv_protocol: Literal["DES", "AES", "AES192", "AES256", "AES192C", "AES256C"] = "AES"
    context: str = ""  # v3 context name
    if_index: Annotated[int, msgspec.Meta(ge=1)] | None = None  # the row for IF-MIB points
    timeout: Duration | None = None  # per poll, all tries together
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1  # resend a lost request in one poll

    def __post_init__(self) -> None:
        v3_keys = [k for k in ("user", "auth_key", "priv_key") if getattr(self, k) is not None]
        if self.version == "2c":
            if self.community is None:
                raise ValueError("version 2c needs a community")
            if v3_keys:
                raise ValueError(f"{', '.join(v3_keys)}: only for version 3")
        else:
            if self.user is None:
                raise ValueError("version 3 needs a user")
            if self.community is not None:
                raise ValueError("community: only for version 2c")
            if self.priv_key is not None and self.auth_key is None:
                raise ValueError("priv_key needs auth_key too (authPriv)")


def _missing(value: Any) -> str | None:
    """The SNMP exception name when the device has no such OID, else None."""
    for kind, name in MISSING.items():
        if isinstance(value, kind):
            return name
    return None


def _number(value: Any) -> int | float | None:
    """The numeric value of an SNMP answer, or None when it has none."""
    if isinstance(value, rfc1902.Integer | rfc1902.Integer32 | rfc1902.Unsigned32):
        return int(value)
    if isinstance(value, rfc1902.Counter32 | rfc1902.Counter64 | rfc1902.Gauge32):
        return int(value)
    if isinstance(value, rfc1902.TimeTicks):
        return int(value)
    if isinstance(value, rfc1902.OctetString) and not isinstance(value, rfc1902.IpAddress):
        text = bytes(value).decode("ascii", "replace").strip()
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in text else number
    return None


def _text(value: Any) -> str:
    if isinstance(value, rfc1902.OctetString) and not isinstance(value, rfc1902.IpAddress):
        raw = bytes(value)
        return raw.decode("utf-8", "replace").rstrip("\x00")
    return str(value.prettyPrint())


class SnmpDriver(Driver):
    name = "snmp"
    Profile = SnmpProfile
    Connection = SnmpConnection

    def __init__(self, device: DeviceContext, profile: Any, connection: Any) -> None:
        super().__init__(device, profile, connection)
        self._engine: Any = None
        self._target: Any = None
        self._auth: Any = None
        self._rates: dict[str, CounterRate] = {}
        self._opened_at: float | None = None  # the first read's time budget includes open()

    def oid(self, point: SnmpPoint) -> str:
        """The full OID a point reads, with its index appended."""
        if point.index is None:
            return point.oid
        if point.index == "if_index":
            index = self.connection.if_index or self.profile.if_index
            if index is None:
                raise DriverError(
                    f"{point.metric}: set connection.if_index (the interface's ifIndex)"
                )
            return f"{point.oid}.{index}"
        return f"{point.oid}.{point.index}"

    def _credentials(self) -> Any:
        conn = self.connection
        if conn.version == "2c":
            return hlapi.CommunityData(conn.community.get_secret_value(), mpModel=1)
        auth = conn.auth_key.get_secret_value() if conn.auth_key else None
        priv = conn.priv_key.get_secret_value() if conn.priv_key else None
        return hlapi.UsmUserData(
            conn.user,
            authKey=auth,
            privKey=priv,
            authProtocol=AUTH[conn.auth_protocol] if auth else hlapi.usmNoAuthProtocol,
            privProtocol=PRIV[conn.priv_protocol] if priv else hlapi.usmNoPrivProtocol,
        )

    def _wait(self) -> float:
        return budget(self.device.timeout, self.connection.timeout or self.profile.timeout)

    async def open(self) -> None:
        for point in self.profile.points:
            self.oid(point)  # a missing if_index is a config problem: say so before polling
        conn = self.connection
        tries = conn.retries + 1
        self._opened_at = time.monotonic()
        # building an engine takes tens of milliseconds of CPU: keep it off the event loop
        self._engine = await asyncio.to_thread(hlapi.SnmpEngine)
        self._auth = self._credentials()
        try:
            self._target = await hlapi.UdpTransportTarget.create(
                (conn.host, conn.port), timeout=self._wait() / tries, retries=conn.retries
            )
        except Exception as exc:  # pysnmp wraps resolution failures in its own error
            await self.close()
            raise DriverError(f"cannot resolve {conn.host}: {exc}") from None

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.close_dispatcher()
            except Exception:  # closing must not raise
                pass

    async def _get(self, oids: list[str]) -> dict[str, Any]:
        if self._engine is None:
            await self.open()
        context = hlapi.ContextData(contextName=self.connection.context)
        where = self._where()
        answers: dict[str, Any] = {}
        step = self.profile.max_oids
        for start in range(0, len(oids), step):
            chunk = oids[start : start + step]
            objects = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for oid in chunk]
            indication, status, index, varbinds = await hlapi.get_cmd(
                self._engine, self._auth, self._target, context, *objects, lookupMib=False
            )
            if indication:
                raise DriverError(self._explain(where, indication))
            if status:
                at = chunk[int(index) - 1] if 0 < int(index) <= len(chunk) else "?"
                raise DriverError(f"{where}: {status.prettyPrint()} for {at}")
            for name, value in varbinds:
                answers[str(name)] = value
        return answers

    def _where(self) -> str:
        return f"{self.connection.host}:{self.connection.port}"

    def _explain(self, where: str, indication: Any) -> str:
        text = str(indication)
        if "timeout" in text.lower() or "no snmp response" in text.lower():
            who = (
                "community"
                if self.connection.version == "2c"
                else f"user {self.connection.user} and keys"
            )
            return f"{where}: no answer within {self._wait():g}s (check address, port, {who})"
        return f"{where}: {text}"

    async def read(self, at: float) -> list[Sample]:
        wanted = [(point, self.oid(point)) for point in self.profile.points]
        rates = any(point.kind == "rate" for point in self.profile.points)
        oids = [oid for _point, oid in wanted]
        if rates:
            oids.append(self.profile.uptime_oid)
        started = self._opened_at or time.monotonic()
        self._opened_at = None
        remaining = max(0.01, started + self._wait() - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                answers = await self._get(list(dict.fromkeys(oids)))
        except TimeoutError:
            raise DriverError(self._explain(self._where(), "timeout")) from None
        uptime = None
        if rates:
            raw = answers.get(self.profile.uptime_oid)
            number = _number(raw) if raw is not None and _missing(raw) is None else None
            uptime = int(number) if number is not None else None
        return [self._sample(point, oid, answers.get(oid), at, uptime) for point, oid in wanted]

    def _sample(
        self, point: SnmpPoint, oid: str, raw: Any, at: float, uptime: int | None
    ) -> Sample:
        def bad(error: str) -> Sample:
            return Sample(point.metric, None, point.unit, quality="bad", error=error)

        if raw is None:
            return bad(f"no value for {oid} in the answer")
        missing = _missing(raw)
        if missing is not None:
            if point.kind == "rate":
                self._rates.pop(point.metric, None)
            return bad(f"{missing} at {oid}")
        if point.kind == "text":
            return Sample(point.metric, _text(raw), point.unit)
        number = _number(raw)
        if number is None:
            return bad(f"{oid}: not a number: {_text(raw)[:40]!r}")
        if number in point.invalid:
            return bad(f"{oid}: {number} means no reading (listed in invalid)")
        if point.kind == "flag":
            return Sample(point.metric, 1 if number in point.one_of else 0, point.unit)
        if point.kind == "rate":
            return self._rate(point, oid, raw, at, uptime)
        value = number * point.scale + point.offset
        if point.scale == 1.0 and point.offset == 0.0:
            return Sample(point.metric, number, point.unit)
        return Sample(point.metric, round(value, 6), point.unit)

    def _rate(self, point: SnmpPoint, oid: str, raw: Any, at: float, uptime: int | None) -> Sample:
        if isinstance(raw, rfc1902.Counter64):
            width = 64
        elif isinstance(raw, rfc1902.Counter32):
            width = 32
        else:
            return Sample(
                point.metric,
                None,
                point.unit,
                "bad",
                f"{oid}: {type(raw).__name__} is not a counter",
            )
        state = self._rates.get(point.metric)
        if state is None or state.width != width:
            state = self._rates[point.metric] = CounterRate(width)
        rate = state.update(int(raw), at, uptime)
        if rate.value is None:
            return Sample(point.metric, None, point.unit, "bad", rate.reason)
        return Sample(point.metric, round(rate.value * point.scale, 3), point.unit)

    def metrics(self) -> list[tuple[str, str | None]]:
        return [(point.metric, point.unit) for point in self.profile.points]

    def value_types(self) -> dict[str, ValueType]:
        return {p.metric: "string" if p.kind == "text" else "number" for p in self.profile.points}
