"""Turning ``devices:`` entries of agent.yaml into ready drivers."""

from dataclasses import dataclass
from pathlib import Path

from agent import derived
from agent.config import AgentConfig, DeviceSection
from agent.derived import Derivation
from agent.drivers import DeviceContext, Driver, PortClaim
from agent.profiles import default_profiles_dir, load_profile, profile_path
from wire.configfile import ConfigError
from wire.structs import ValidationError, convert, problems


@dataclass
class Device:
    config: DeviceSection
    driver: Driver

    @property
    def id(self) -> str:
        return self.config.id


def build_devices(
    config: AgentConfig, source: str = "agent.yaml", extra_profiles: Path | None = None
) -> list[Device]:
    """Every enabled device with its driver; raises ConfigError listing every problem.

    Profiles in ``extra_profiles`` (pushed from central) are looked up first."""
    profiles_dir = config.profiles_dir or default_profiles_dir()
    if not profiles_dir.is_dir():
        raise ConfigError(
            [f"{source}: profiles_dir: {profiles_dir.resolve()} is not a directory of profiles"]
        )
    devices: list[Device] = []
    indexes: list[int] = []
    problems: list[str] = []
    for index, section in enumerate(config.devices):
        if not section.enabled:
            continue
        try:
            devices.append(build_device(section, profiles_dir, source, index, extra_profiles))
            indexes.append(index)
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        link_ports(devices, indexes, source)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return devices


def link_ports(devices: list[Device], indexes: list[int], source: str = "agent.yaml") -> None:
    """Devices naming the same port share it when their drivers can (Modbus units on one
    line, one Modbus TCP gateway) and their settings agree; anything else is a
    ConfigError naming both devices."""
    users: dict[str, list[tuple[int, Device, PortClaim]]] = {}
    for index, device in zip(indexes, devices, strict=True):
        for claim in device.driver.claims():
            users.setdefault(claim.port, []).append((index, device, claim))
    problems: list[str] = []
    for port, claimed in users.items():
        first_index, first, first_claim = claimed[0]
        for index, device, claim in claimed[1:]:
            both = (
                f"{source}: devices[{index}] ({device.id}) and devices[{first_index}] "
                f"({first.id}) both use {claim.kind} {port}"
            )
            if claim.share is None or claim.share != first_claim.share:
                if claim.share is None or first_claim.share is None:
                    alone = device.id if claim.share is None else first.id
                    why = f"{alone} has no address (it can't share a line): it needs the port alone"
                else:
                    why = f"{first_claim.share} and {claim.share} can't share a line"
                problems.append(f"{both}: {why}")
                continue
            differ = [
                f"{key} {mine} vs {theirs}"
                for (key, mine), (_, theirs) in zip(
                    claim.settings, first_claim.settings, strict=True
                )
                if mine != theirs
            ]
            if differ:
                problems.append(
                    f"{both} with different settings ({', '.join(differ)}); "
                    "devices on one line must use the same settings"
                )
    if problems:
        raise ConfigError(problems)
    for claimed in users.values():
        if len(claimed) > 1:
            drivers = [device.driver for _, device, _ in claimed]
            type(drivers[0]).link(drivers)


def build_device(
    section: DeviceSection,
    profiles_dir: Path,
    source: str = "agent.yaml",
    index: int = 0,
    extra_profiles: Path | None = None,
) -> Device:
    where = f"devices[{index}]"
    try:
        if extra_profiles is not None and profile_path(extra_profiles, section.profile).is_file():
            profiles_dir = extra_profiles
        driver_cls, profile = load_profile(profiles_dir, section.profile)
    except ConfigError as exc:
        raise ConfigError(
            [f"{source}: {where}.profile: {p} [device {section.id}]" for p in exc.problems]
        ) from None
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
    driver = driver_cls(context, profile, connection)
    driver.derive = derivation(driver, section, source, where)
    return Device(section, driver)


def derivation(
    driver: Driver, section: DeviceSection, source: str, where: str
) -> Derivation | None:
    """The profile's derived values and events with this device's settings; raises
    ConfigError naming the device's setting or the profile's key."""
    profile = driver.profile
    problems = derived.check(
        profile.derived, profile.events, profile.settings, (m for m, _ in driver.metrics())
    )
    if problems:
        raise ConfigError(
            [
                f"{source}: {where}.profile ({section.profile}): {p} [device {section.id}]"
                for p in problems
            ]
        )
    values, problems = derived.device_settings(profile.settings, section.settings)
    if problems:
        raise ConfigError([f"{source}: {where}.{p} [device {section.id}]" for p in problems])
    if not profile.derived and not profile.events:
        return None
    return Derivation(profile.derived, profile.events, values)
