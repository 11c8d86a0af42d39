"""Firmware profiles: one YAML file per device model under ``firmware-profiles/``.

A device's ``profile: river/generic-level`` names ``<profiles_dir>/river/generic-level.yaml``.
The file's ``driver`` key picks the driver, whose ``Profile`` model validates the rest.
"""

from pathlib import Path
from typing import Any

from agent.drivers import Driver, UnknownDriver, load_driver
from wire.configfile import ConfigError, read_yaml
from wire.structs import ValidationError, convert, problems


def default_profiles_dir() -> Path:
    """The shipped profiles: inside the wheel, or the source checkout's folder."""
    here = Path(__file__).resolve().parent
    installed = here / "firmware_profiles"
    if installed.is_dir():
        return installed
    return here.parent / "firmware-profiles"


def profile_path(profiles_dir: Path, name: str) -> Path:
    if not name or name.startswith("/") or ".." in Path(name).parts:
        raise ConfigError([f"invalid profile name {name!r}"])
    return profiles_dir / f"{name}.yaml"


def load_profile(profiles_dir: Path, name: str) -> tuple[type[Driver], Any]:
    """The driver class and the validated profile; raises ConfigError naming file and key."""
    path = profile_path(profiles_dir, name)
    if not path.is_file():
        raise ConfigError([f"{path}: profile {name!r} not found in {profiles_dir}"])
    return parse_profile(path)


def parse_profile(path: Path) -> tuple[type[Driver], Any]:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with a 'driver' key"])
    driver_name = data.get("driver")
    if not isinstance(driver_name, str):
        raise ConfigError([f"{path}: driver: required key is missing"])
    try:
        driver = load_driver(driver_name)
    except UnknownDriver as exc:
        raise ConfigError([f"{path}: driver: {exc}"]) from None
    try:
        profile = convert(data, driver.Profile, base_dir=path.parent)
    except ValidationError as exc:
        raise ConfigError(problems(str(path), exc, data, model=driver.Profile)) from None
    return driver, profile


def all_profiles(profiles_dir: Path) -> list[str]:
    """Every profile name under ``profiles_dir`` (``river/generic-level``, ...)."""
    return sorted(
        str(p.relative_to(profiles_dir).with_suffix(""))
        for p in profiles_dir.rglob("*.yaml")
        if not p.name.startswith("_")
    )
