"""agent.yaml: the gateway's settings, validated. Built in ``main()``, passed down."""

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from wire import Duration, gateway_id_ok
from wire.broker import MqttBase
from wire.configfile import LogSection, load_model
from wire.structs import REDACTED, SECRET_KEY, Section, dump, unique

DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class GatewayId(str):
    @classmethod
    def parse(cls, value: Any) -> "GatewayId":
        if not isinstance(value, str) or not gateway_id_ok(value):
            raise ValueError(
                "gateway id must be lowercase letters, digits and dashes (e.g. gw-ambon-01)"
            )
        return cls(value)


class CommitInterval(Duration):
    minimum, maximum = 0.01, 60.0


class HealthInterval(Duration):
    minimum = 0.1


class PollInterval(Duration):
    minimum = 0.01


class GatewaySection(Section):
    id: GatewayId
    site: NonEmpty
    name: str | None = None


class MqttSection(MqttBase):
    client_id: str | None = None  # default: the gateway id
    window: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 64  # QoS 1 messages in flight
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 500  # readings per message
    reconnect_min: Duration = Duration(1.0)
    reconnect_max: Duration = Duration(60.0)  # backoff doubles up to this, with jitter

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be at least reconnect_min")
        if self.reconnect_min <= 0:
            raise ValueError("reconnect_min must be more than 0")


class BufferSection(Section):
    path: Path = Path("/var/lib/pantau/buffer.db")
    max_mb: Annotated[float, msgspec.Meta(gt=0)] = 256.0
    max_readings: Annotated[int, msgspec.Meta(gt=0)] | None = None
    commit_interval: CommitInterval = CommitInterval(1.0)  # group commit: one fsync per interval


class HealthSection(Section):
    interval: HealthInterval = HealthInterval(60.0)


class MetricsSection(Section):
    """``metrics:``: the agent's own Prometheus metrics, off unless ``listen`` is set."""

    listen: str | None = None  # host:port, e.g. 127.0.0.1:9108

    def __post_init__(self) -> None:
        if self.listen is None:
            return
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("listen: expected host:port, e.g. 127.0.0.1:9108")


class RollbackAfter(Duration):
    minimum = 1.0


class RemoteConfigSection(Section):
    """``remote_config:``: device lists central pushes with ``apply-config``."""

    enabled: bool = True
    dir: Path | None = None  # default: remote/ next to the buffer
    # a push the broker did not confirm within this long is rolled back
    rollback_after: RollbackAfter = RollbackAfter(300.0)


class DeviceSection(Section):
    id: DeviceId
    profile: NonEmpty
    interval: PollInterval = PollInterval(10.0)
    timeout: Duration | None = None  # default: the interval, at most 5s
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0
    enabled: bool = True
    connection: dict[str, Any] = msgspec.field(default_factory=dict)
    # numbers the profile's derived values need from this device (a bin's depth_cm)
    settings: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def poll_timeout(self) -> float:
        return self.timeout if self.timeout is not None else min(self.interval, 5.0)


class AgentConfig(Section):
    gateway: GatewaySection
    mqtt: MqttSection = msgspec.field(default_factory=MqttSection)
    buffer: BufferSection = msgspec.field(default_factory=BufferSection)
    health: HealthSection = msgspec.field(default_factory=HealthSection)
    log: LogSection = msgspec.field(default_factory=LogSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    remote_config: RemoteConfigSection = msgspec.field(default_factory=RemoteConfigSection)
    profiles_dir: Path | None = None
    devices: list[DeviceSection] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        unique("devices", "device id", (device.id for device in self.devices))


def load_config(path: Path) -> AgentConfig:
    """Raises ``wire.configfile.ConfigError`` naming the file and key."""
    return load_model(AgentConfig, path)


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
    result: dict[str, Any] = redact(dump(config))
    return result
