"""agent.yaml: the gateway's settings, validated. Built in ``main()``, passed down."""

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wire import Duration, gateway_id_ok
from wire.broker import MqttBase, resolve_path
from wire.configfile import SECRET_KEY, LogSection, load_model

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_resolve = resolve_path


class GatewaySection(_Section):
    id: str
    site: str = Field(min_length=1)
    name: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not gateway_id_ok(value):
            raise ValueError(
                "gateway id must be lowercase letters, digits and dashes (e.g. gw-ambon-01)"
            )
        return value


class MqttSection(MqttBase):
    client_id: str | None = None  # default: the gateway id
    window: int = Field(default=64, ge=1, le=1000)  # QoS 1 messages in flight
    batch_size: int = Field(default=500, ge=1, le=2000)  # readings per telemetry message
    reconnect_min: Duration = 1.0
    reconnect_max: Duration = 60.0  # backoff doubles up to this, with jitter

    @model_validator(mode="after")
    def _backoff(self) -> "MqttSection":
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        if self.reconnect_min <= 0:
            raise ValueError("reconnect_min must be more than 0")
        return self


class BufferSection(_Section):
    path: Path = Path("/var/lib/pantau/buffer.db")
    max_mb: float = Field(default=256.0, gt=0)
    max_readings: int | None = Field(default=None, gt=0)
    commit_interval: Duration = 1.0  # group commit: at most one fsync per interval

    @field_validator("commit_interval")
    @classmethod
    def _commit_interval(cls, value: float) -> float:
        if not 0.01 <= value <= 60:
            raise ValueError("commit_interval must be between 10ms and 60s")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) or value


class HealthSection(_Section):
    interval: Duration = 60.0

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("interval must be at least 100ms")
        return value


class DeviceSection(_Section):
    id: DeviceId
    profile: str = Field(min_length=1)
    interval: Duration = 10.0
    timeout: Duration | None = None  # default: the interval, at most 5s
    retries: int = Field(default=0, ge=0, le=10)
    enabled: bool = True
    connection: dict[str, Any] = Field(default_factory=dict)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError("interval must be at least 10ms")
        return value

    @property
    def poll_timeout(self) -> float:
        return self.timeout if self.timeout is not None else min(self.interval, 5.0)


class AgentConfig(_Section):
    gateway: GatewaySection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    health: HealthSection = Field(default_factory=HealthSection)
    log: LogSection = Field(default_factory=LogSection)
    profiles_dir: Path | None = None
    devices: list[DeviceSection] = Field(default_factory=list)

    @field_validator("profiles_dir")
    @classmethod
    def _profiles_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(value, info)

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: list[DeviceSection]) -> list[DeviceSection]:
        seen: set[str] = set()
        for device in devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} is used twice")
            seen.add(device.id)
        return devices


def load_config(path: Path) -> AgentConfig:
    """Raises ``wire.configfile.ConfigError`` naming the file and key."""
    return load_model(AgentConfig, path)


REDACTED = "**redacted**"


def redact(value: Any) -> Any:
    """``value`` with every secret-looking key's value replaced, at any depth; passwords
    in URLs (``mqtt://user:pw@host``) are masked too."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if v is not None and SECRET_KEY.search(str(k)) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            return value.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return value


def redacted(config: AgentConfig) -> dict[str, Any]:
    """The config as a dict with every secret replaced, for ``get-config`` and logs:
    any key named like password/secret/token/key/community/auth*/priv*, at any depth
    (devices' ``connection`` included)."""
    result: dict[str, Any] = redact(config.model_dump(mode="json"))
    return result
