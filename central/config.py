"""central.yaml: the aggregator's settings, validated. Built in ``main()``, passed down."""

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wire import Duration
from wire.broker import MqttBase, resolve_path
from wire.configfile import LogSection, load_model


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_resolve = resolve_path


class MqttSection(MqttBase):
    client_id: str = "pantau-central"
    session_expiry: Duration = 7 * 86400.0  # how long the broker keeps our queue while we're away
    receive_maximum: int = Field(default=1000, ge=1, le=65535)  # unacked messages in flight
    shared_group: str | None = None  # MQTT 5 shared subscription $share/<group>/...

    @field_validator("shared_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("a shared group name must be non-empty without '/', '+' or '#'")
        return value


class InfluxSection(_Section):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    # v1
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    retention_policy: str | None = None
    create_database: bool = True
    # v2
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    # both
    measurement: str = "readings"
    timeout: Duration = 10.0
    batch_size: int = Field(default=10_000, ge=1, le=100_000)  # points per write
    flush_interval: Duration = 0.2  # write a partial batch after this long
    writers: int = Field(default=2, ge=1, le=8)  # concurrent writes
    max_pending: int = Field(default=200_000, ge=1000)  # points held while InfluxDB is slow

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http://host:port or https://host:port")
        return value.rstrip("/")

    @field_validator("token_file")
    @classmethod
    def _token_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _api_keys(self) -> "InfluxSection":
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
        return self

    def secret(self, name: Literal["password", "token"]) -> str | None:
        value = getattr(self, name)
        if value is not None:
            return str(value.get_secret_value())
        if name == "token" and self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return None


class ApiSection(_Section):
    listen: str = "127.0.0.1:8080"
    external_url: str | None = None  # how operators reach the API (links in webhooks)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class WebhookSection(_Section):
    name: str = Field(min_length=1)
    url: str
    secret: SecretStr | None = None
    secret_file: Path | None = None
    match: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("secret_file")
    @classmethod
    def _secret_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @model_validator(mode="after")
    def _one_secret(self) -> "WebhookSection":
        if self.secret is None and self.secret_file is None:
            raise ValueError("a webhook needs 'secret' or 'secret_file' to sign its payloads")
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("give secret or secret_file, not both")
        return self

    def secret_value(self) -> str:
        if self.secret is not None:
            return self.secret.get_secret_value()
        assert self.secret_file is not None
        return self.secret_file.read_text(encoding="utf-8").strip()


class AlertsSection(_Section):
    evaluation_interval: Duration = 1.0
    repeat_interval: Duration = 4 * 3600.0  # re-notify a still-firing incident
    webhook_expiry: Duration = 24 * 3600.0  # give up delivering after this long
    max_backoff: Duration = 300.0
    max_reading_age: Duration = 600.0  # older readings (a backlog) don't drive alerts


class CentralConfig(_Section):
    mqtt: MqttSection = Field(default_factory=MqttSection)
    influx: InfluxSection
    data_dir: Path = Path("/var/lib/pantau-central")
    api: ApiSection = Field(default_factory=ApiSection)
    log: LogSection = Field(default_factory=LogSection)
    dead_letters_max: int = Field(default=10_000, ge=10)
    offline_after: Duration = 180.0  # a gateway silent this long shows as offline
    rules_file: Path | None = None
    webhooks: list[WebhookSection] = Field(default_factory=list)
    alerts: AlertsSection = Field(default_factory=AlertsSection)

    @field_validator("data_dir", "rules_file")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("webhooks")
    @classmethod
    def _unique(cls, hooks: list[WebhookSection]) -> list[WebhookSection]:
        names = [h.name for h in hooks]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"webhook names must be unique: {', '.join(sorted(dupes))}")
        return hooks


def load_config(path: Path) -> CentralConfig:
    """Raises ``wire.configfile.ConfigError`` naming the file and key."""
    return load_model(CentralConfig, path)


def redacted(config: CentralConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    for section, key in (("mqtt", "password"), ("influx", "password"), ("influx", "token")):
        if data.get(section, {}).get(key) is not None:
            data[section][key] = "**redacted**"
    for hook in data.get("webhooks", []):
        if hook.get("secret") is not None:
            hook["secret"] = "**redacted**"
    return data
