"""Turning ``devices:`` entries of agent.yaml into ready drivers."""

from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, DeviceSection
from agent.drivers import DeviceContext, Driver
from agent.profiles import default_profiles_dir, load_profile
from wire.configfile import ConfigError
from wire.structs import ValidationError, convert, problems


@dataclass
class Device:
    config: DeviceSection
    driver: Driver

    @property
    def id(self) -> str:
        return self.config.id


def build_devices(config: AgentConfig, source: str = "agent.yaml") -> list[Device]:
    """Every enabled device with its driver; raises ConfigError listing every problem."""
    profiles_dir = config.profiles_dir or default_profiles_dir()
    if not profiles_dir.is_dir():
        raise ConfigError(
            [f"{source}: profiles_dir: {profiles_dir.resolve()} is not a directory of profiles"]
        )
    devices: list[Device] = []
    problems: list[str] = []
    for index, section in enumerate(config.devices):
        if not section.enabled:
            continue
        try:
            devices.append(build_device(section, profiles_dir, source, index))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return devices


def build_device(
    section: DeviceSection, profiles_dir: Path, source: str = "agent.yaml", index: int = 0
) -> Device:
    where = f"devices[{index}]"
    try:
        driver_cls, profile = load_profile(profiles_dir, section.profile)
    except ConfigError as exc:
        raise ConfigError([f"{source}: {where}.profile: {p}" for p in exc.problems]) from None
    try:
        connection = convert(section.connection, driver_cls.Connection)
    except ValidationError as exc:
        lines = problems(
            source,
            exc,
            section.connection,
            loc_prefix=f"{where}.connection",
            model=driver_cls.Connection,
        )
        raise ConfigError([f"{line} [device {section.id}]" for line in lines]) from None
    context = DeviceContext(
        id=section.id,
        interval=section.interval,
        timeout=section.poll_timeout,
        retries=section.retries,
    )
    return Device(section, driver_cls(context, profile, connection))
