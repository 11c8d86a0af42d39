"""central.yaml: the aggregator's settings, validated. Built in ``main()``, passed down."""

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import msgspec

from central.database import redact_url
from wire.broker import MqttBase
from wire.configfile import LogSection, load_model
from wire.durations import Duration
from wire.structs import (
    Secret,
    Section,
    check_secret_file,
    dump,
    read_secret_file,
    unique,
)


class SharedGroup(str):
    """An MQTT 5 shared subscription group name (``$share/<group>/...``)."""

    @classmethod
    def parse(cls, value: Any) -> "SharedGroup":
        if not isinstance(value, str) or not value or any(c in value for c in "/+#"):
            raise ValueError("a shared group name must be non-empty without '/', '+' or '#'")
        return cls(value)


class WebhookUrl(str):
    """Where a webhook is delivered: an ``http://`` or ``https://`` URL."""

    expected: ClassVar[str] = "expected an http:// or https:// URL"

    @classmethod
    def parse(cls, value: Any) -> Self:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(cls.expected)
        return cls(value)


class InfluxUrl(WebhookUrl):
    """``http://host:port`` or ``https://host:port``, without a trailing slash."""

    expected = "expected http://host:port or https://host:port"

    @classmethod
    def parse(cls, value: Any) -> Self:
        return cls(super().parse(value).rstrip("/"))


class Listen(str):
    """``host:port`` the HTTP API listens on."""

    @classmethod
    def parse(cls, value: Any) -> "Listen":
        if not isinstance(value, str):
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return cls(value)


class MqttSection(MqttBase):
    client_id: str = "pantau-central"
    # how long the broker keeps our queue while we're away
    session_expiry: Duration = Duration(7 * 86400.0)
    # unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum)
    receive_maximum: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 10000
    # readings received but not yet stored and acknowledged: the window that matters
    inflight_readings: Annotated[int, msgspec.Meta(ge=100)] = 100_000
    shared_group: SharedGroup | None = None  # MQTT 5 shared subscription $share/<group>/...


class InfluxSection(Section):
    url: InfluxUrl = InfluxUrl("http://127.0.0.1:8086")
    api: Literal["v1", "v2"] = "v1"
    # v1
    database: str | None = None
    username: str | None = None
    password: Secret | None = None
    retention_policy: str | None = None
    create_database: bool = True
    # v2
    org: str | None = None
    bucket: str | None = None
    token: Secret | None = None
    token_file: Path | None = None
    # both
    measurement: str = "readings"
    timeout: Duration = Duration(10.0)
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000  # points per write
    flush_interval: Duration = Duration(0.2)  # write a partial batch after this long
    writers: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2  # concurrent writes
    # points held while InfluxDB is slow
    max_pending: Annotated[int, msgspec.Meta(ge=1000)] = 200_000

    def __post_init__(self) -> None:
        if self.api == "v1":
            if not self.database:
                raise ValueError("api v1 needs 'database'")
            unused = [k for k in ("org", "bucket", "token") if getattr(self, k)]
        else:
            missing = [k for k in ("org", "bucket") if not getattr(self, k)]
            if self.token is None and self.token_file is None:
                missing.append("token")
            if missing:
                raise ValueError(f"api v2 needs {', '.join(repr(m) for m in missing)}")
            unused = [k for k in ("database", "username", "password") if getattr(self, k)]
        if unused:
            raise ValueError(f"api {self.api} does not use {', '.join(repr(u) for u in unused)}")
        check_secret_file(self.token_file)

    def secret(self, name: Literal["password", "token"]) -> str | None:
        value = getattr(self, name)
        if value is not None:
            return str(value.get_secret_value())
        if name == "token" and self.token_file is not None:
            return read_secret_file(self.token_file)
        return None


class DatabaseUrl(str):
    """``postgresql://user:password@host:port/database`` (the password may also come
    from ``PANTAU_DATABASE__URL`` in the environment)."""

    @classmethod
    def parse(cls, value: Any) -> "DatabaseUrl":
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("expected postgresql://user:password@host:port/database")
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError(
                "expected postgresql://user:password@host:port/database (host and database)"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("the port in the database URL is not a number") from None
        return cls(value)


class DatabaseSection(Section):
    # unset: SQLite files under data_dir (one machine); set: PostgreSQL shared by workers
    url: DatabaseUrl | None = None


class ApiSection(Section):
    listen: Listen = Listen("127.0.0.1:8080")
    external_url: str | None = None  # how operators reach the API (links in webhooks)
    docs: bool = True  # /docs, /redoc, /openapi.json (read token or dashboard sign-in)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class WebhookSection(Section):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    url: WebhookUrl
    secret: Secret | None = None
    secret_file: Path | None = None
    match: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        if self.secret is None and self.secret_file is None:
            raise ValueError("a webhook needs 'secret' or 'secret_file' to sign its payloads")
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("give secret or secret_file, not both")
        check_secret_file(self.secret_file)

    def secret_value(self) -> str:
        if self.secret is not None:
            return self.secret.get_secret_value()
        assert self.secret_file is not None
        return read_secret_file(self.secret_file)


class AlertsSection(Section):
    evaluation_interval: Duration = Duration(1.0)
    repeat_interval: Duration = Duration(4 * 3600.0)  # re-notify a still-firing incident
    webhook_expiry: Duration = Duration(24 * 3600.0)  # give up delivering after this long
    max_backoff: Duration = Duration(300.0)
    max_reading_age: Duration = Duration(600.0)  # older readings (a backlog) don't drive alerts


class TileUrl(str):
    """A map tile URL template with ``{z}``, ``{x}`` and ``{y}``."""

    @classmethod
    def parse(cls, value: Any) -> "TileUrl":
        WebhookUrl.parse(value)
        if not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError("expected a tile URL with {z}, {x} and {y}")
        return cls(value)


class RefreshInterval(Duration):
    minimum, maximum = 1.0, 300.0


class DashboardSection(Section):
    language: Literal["id", "en"] = "id"
    # live pages fetch fresh values this often
    refresh: RefreshInterval = RefreshInterval(3.0)
    session_max_age: Duration = Duration(12 * 3600.0)  # a sign-in lasts this long
    # map tiles when the command center can reach a tile server (else the bundled outline)
    map_tiles: TileUrl | None = None


class LimitsSection(Section):
    """What one gateway may make central store and remember, checked before anything is
    stored or cached. Readings beyond a limit are not stored; their message is
    dead-lettered (reason ``limit``) so it can be replayed after raising the limit."""

    gateways: Annotated[int, msgspec.Meta(ge=1)] = 10_000  # distinct gateway ids
    devices_per_gateway: Annotated[int, msgspec.Meta(ge=1)] = 200
    metrics_per_gateway: Annotated[int, msgspec.Meta(ge=1)] = 500  # distinct metric names
    series_per_gateway: Annotated[int, msgspec.Meta(ge=1)] = 5_000  # (device, metric) pairs
    name_length: Annotated[int, msgspec.Meta(ge=8, le=128)] = 64  # device, metric, site


class ProvisioningSection(Section):
    """``provisioning:``: the state directory ``pantau-provision`` uses, shared with
    central, so its admin API can revoke and rotate gateway credentials."""

    state: Path  # pantau-provision's --state / $PANTAU_PROVISION_STATE
    broker_files: Path | None = None  # rewrite passwd, acl (and crl.pem) here after a change
    bundles: Path | None = None  # rotated bundles go here (default: data_dir/bundles)


class CentralConfig(Section, kw_only=True):  # kw_only spelled out for mypy
    mqtt: MqttSection = msgspec.field(default_factory=MqttSection)
    influx: InfluxSection
    data_dir: Path = Path("/var/lib/pantau-central")
    database: DatabaseSection = msgspec.field(default_factory=DatabaseSection)
    api: ApiSection = msgspec.field(default_factory=ApiSection)
    log: LogSection = msgspec.field(default_factory=LogSection)
    dead_letters_max: Annotated[int, msgspec.Meta(ge=10)] = 10_000
    dead_letters_max_age: Duration = Duration(30 * 86400.0)  # older ones are deleted
    dead_letters_max_mb: Annotated[int, msgspec.Meta(ge=1)] = 256  # then the oldest, past this
    offline_after: Duration = Duration(180.0)  # a gateway silent this long shows as offline
    rules_file: Path | None = None
    webhooks: list[WebhookSection] = msgspec.field(default_factory=list)
    alerts: AlertsSection = msgspec.field(default_factory=AlertsSection)
    dashboard: DashboardSection = msgspec.field(default_factory=DashboardSection)
    limits: LimitsSection = msgspec.field(default_factory=LimitsSection)
    provisioning: ProvisioningSection | None = None

    def __post_init__(self) -> None:
        unique("webhooks", "webhook name", (hook.name for hook in self.webhooks))


def load_config(path: Path) -> CentralConfig:
    """Raises ``wire.configfile.ConfigError`` naming the file and key."""
    return load_model(CentralConfig, path)


def redacted(config: CentralConfig) -> dict[str, Any]:
    """The config as plain data (``get-config``, ``check``), secrets as ``**redacted**``."""
    data: dict[str, Any] = dump(config)
    if config.database.url:
        data["database"]["url"] = redact_url(config.database.url)
    return data
