"""Request and response bodies of the registry, readings and dead-letter routes:
``<Resource>Create`` (POST), ``<Resource>Update`` (PATCH, every field optional),
``<Resource>Public`` (what the API answers).

Times in answers are ISO 8601 in UTC (``2026-11-23T14:30:00Z``); reading times
also come as ``ts``, integer milliseconds since the Unix epoch, as on the wire.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from central.registry import normalize_timezone
from wire.topics import gateway_id_ok, reserved_gateway_id

SiteName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f/]+$")
]
Text = Annotated[str, StringConstraints(max_length=1000)]


def when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Timezone(_In):
    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else normalize_timezone(value)


# sites


class SiteCreate(_Timezone):
    name: SiteName
    timezone: str = Field(
        default="Asia/Jakarta", description="WIB, WITA, WIT or an IANA name; stored as IANA"
    )
    description: Text | None = None


class SiteUpdate(_Timezone):
    timezone: str | None = None
    description: Text | None = None


class SitePublic(BaseModel):
    name: str
    timezone: str
    description: str | None
    created: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> "SitePublic":
        return cls(
            name=row["name"],
            timezone=row["timezone"],
            description=row["description"],
            created=when(row["created"]),
        )


# gateways


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class GatewayCreate(_Timezone):
    id: str = Field(description="lowercase letters, digits and dashes, 1-64 characters")
    site: SiteName | None = None
    name: Text | None = None
    location: Location | None = None
    timezone: str | None = Field(
        default=None, description="the site's time zone, used when the site is new"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not gateway_id_ok(value):
            raise ValueError("lowercase letters, digits and dashes, 1-64, no leading/trailing dash")
        if reserved_gateway_id(value):
            raise ValueError("reserved: central's identities (pantau-central...) and 'central'")
        return value


class GatewayUpdate(_In):
    site: SiteName | None = None
    name: Text | None = None
    location: Location | None = None


class DeviceHealthPublic(BaseModel):
    status: Literal["ok", "failing", "unknown"]
    failing_since: int | None = Field(default=None, description="ms since the Unix epoch")
    error: str | None = None
    skipped_ticks: int | None = None


class GatewayHealthPublic(BaseModel):
    """The gateway's latest health message, as it sent it (history: InfluxDB
    measurement ``gateway_health``)."""

    time: datetime = Field(description="when the gateway measured it (ISO 8601, UTC)")
    ts: int = Field(description="the same, ms since the Unix epoch")
    received: datetime = Field(description="when central got it")
    uptime_s: float | None
    cpu_temp_c: float | None
    load1: float | None
    mem_used_pct: float | None
    disk_free_mb: float | None
    buffer_depth: int | None = Field(description="readings waiting in the gateway's buffer")
    buffer_oldest_age_s: float | None
    dropped: int | None = Field(description="readings the full buffer dropped, since start")
    devices: dict[str, DeviceHealthPublic]

    @classmethod
    def of(cls, data: dict[str, Any]) -> "GatewayHealthPublic":
        fields: dict[str, Any] = {
            k: data.get(k) for k in cls.model_fields if k not in ("time", "received")
        }
        fields["devices"] = data.get("devices") or {}
        return cls(
            **fields,
            time=datetime.fromtimestamp(data["ts"] / 1000, UTC),
            received=datetime.fromtimestamp(data["received"], UTC),
        )


class GatewayPublic(BaseModel):
    id: str
    site: str | None
    name: str | None
    location: Location | None
    status: Literal["online", "offline", "never-seen"]
    first_seen: datetime | None
    last_seen: datetime | None = Field(description="ISO 8601, UTC; null until it speaks")
    agent_version: str | None
    provisioned: bool
    health: GatewayHealthPublic | None = Field(
        default=None, description="its latest health message; null until one arrives"
    )
    site_source: Literal["registry", "first-heard"] | None = Field(
        default=None,
        description="registry: set by provisioning or an operator; first-heard: taken from "
        "the gateway's first message because the registry had none (check it). A gateway's "
        "payload never changes its site.",
    )

    @classmethod
    def of(cls, row: dict[str, Any]) -> "GatewayPublic":
        location = None
        if row["lat"] is not None and row["lon"] is not None:
            location = Location(lat=row["lat"], lon=row["lon"])
        return cls(
            id=row["id"],
            site=row["site"],
            name=row["name"],
            location=location,
            status=row["status"],
            first_seen=when(row["first_seen"]),
            last_seen=when(row["last_seen"]),
            agent_version=row["agent_version"],
            provisioned=bool(row["provisioned"]),
            health=GatewayHealthPublic.of(row["health"]) if row.get("health") else None,
            site_source=row.get("site_source"),
        )


class DevicePublic(BaseModel):
    gateway: str
    id: str
    profile: str | None
    driver: str | None
    interval: float | None
    updated: datetime | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> "DevicePublic":
        return cls(**{**row, "updated": when(row["updated"])})


# readings


class LatestPublic(BaseModel):
    device: str
    metric: str
    value: float | bool | str | None
    ts: int = Field(description="sample time, ms since the Unix epoch")
    time: datetime


class BucketPublic(BaseModel):
    time: datetime = Field(description="start of the bucket")
    ts: int
    mean: float | None
    min: float | None
    max: float | None
    count: int


class SeriesPublic(BaseModel):
    gateway: str
    device: str
    metric: str
    start: datetime
    end: datetime
    every: str
    points: list[BucketPublic]


# dead letters


class DeadLetterPublic(BaseModel):
    id: int
    received: datetime
    topic: str
    gateway: str | None
    reason: str
    detail: str
    size: int = Field(description="payload size in bytes (the stored copy is cut at 1 MiB)")
    payload: str | None = Field(description="the raw payload, when it is UTF-8")
    payload_hex: str | None = Field(description="the first 4 KiB in hex, when it is not")
    lines: str | None = Field(
        default=None,
        description="influx_rejected: the line-protocol lines InfluxDB refused (the "
        "message's other lines were stored); a replay writes only these",
    )

    @classmethod
    def of(cls, row: dict[str, Any]) -> "DeadLetterPublic":
        return cls(**{**row, "received": when(row["received"])})
