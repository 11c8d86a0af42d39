"""Device lists pushed from central with the ``apply-config`` command, kept on the gateway.

A push carries ``devices`` (entries exactly as under ``devices:`` in agent.yaml) and
``profiles`` (name → profile document, for profiles the gateway does not ship). It is
validated completely before anything changes; once in force it replaces agent.yaml's
``devices:`` (the rest of agent.yaml still applies) and survives restarts.

Kept in ``remote_config.dir`` (default: ``remote/`` next to the buffer, a folder the
agent may write)::

    pushed.json          {"current": <push>, "previous": <push> | null}, replaced atomically
    profiles/<key>/      the profiles of one push, as YAML files, looked up before the others

A push stays *unconfirmed* until the broker acknowledges a message the agent publishes
after applying it. One not confirmed within ``remote_config.rollback_after`` (also
across restarts: the time counts from when it was applied) is rolled back: the previous
push, or agent.yaml's own devices, is in force again.
"""

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from agent.config import AgentConfig, DeviceSection
from agent.devices import Device, build_devices
from agent.profiles import profile_path
from wire.configfile import ConfigError
from wire.structs import Section, ValidationError, convert, problems, unique

log = logging.getLogger(__name__)

SOURCE = "apply-config"
_KEY = re.compile(r"[^A-Za-z0-9_.-]")


class Push(msgspec.Struct, kw_only=True):
    """One pushed device list, as stored."""

    id: str  # the command id that brought it
    devices: list[dict[str, Any]]
    profiles: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    applied_at: float
    confirmed: bool = False

    @property
    def key(self) -> str:
        """A folder name for its profiles: the id, made safe, plus a content hash."""
        digest = hashlib.sha256(msgspec.json.encode(self.profiles, order="sorted")).hexdigest()[:12]
        return f"{_KEY.sub('_', self.id)[:40]}-{digest}"


class _Stored(msgspec.Struct):
    current: Push | None = None
    previous: Push | None = None


class _Devices(Section):
    devices: list[DeviceSection]

    def __post_init__(self) -> None:
        unique("devices", "device id", (device.id for device in self.devices))


class RemoteStore:
    """``pushed.json`` and the pushed profiles in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "pushed.json"

    def _read(self) -> _Stored:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_Stored)
        except FileNotFoundError:
            return _Stored()
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("%s: unreadable (%s); using agent.yaml's devices", self.path, exc)
            return _Stored()

    def _write(self, stored: _Stored) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # not tempfile: the running agent doesn't load it (agent/lean.py, ~memory)
        tmp = self.folder / f".pushed.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.encode(stored))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._prune(stored)

    def current(self) -> Push | None:
        return self._read().current

    def profiles_dir(self, push: Push) -> Path:
        return self.folder / "profiles" / push.key

    def stage(self, push: Push) -> Path:
        """Write the push's profiles as files; returns their folder."""
        folder = self.profiles_dir(push)
        _remove_tree(folder)
        folder.mkdir(parents=True)
        for name, document in push.profiles.items():
            path = profile_path(folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return folder

    def commit(self, push: Push) -> None:
        """``push`` in force; the one before becomes ``previous`` (one atomic write)."""
        stored = self._read()
        self._write(_Stored(current=push, previous=stored.current))

    def confirm(self, push_id: str) -> bool:
        stored = self._read()
        if stored.current is None or stored.current.id != push_id or stored.current.confirmed:
            return False
        self._write(
            _Stored(
                current=msgspec.structs.replace(stored.current, confirmed=True),
                previous=stored.previous,
            )
        )
        return True

    def rollback(self) -> Push | None:
        """The previous push in force again (None: agent.yaml's devices); returns it."""
        stored = self._read()
        self._write(_Stored(current=stored.previous, previous=None))
        return stored.previous

    def discard_staged(self) -> None:
        """Remove profile folders of pushes not in force (after a rejected push)."""
        self._prune(self._read())

    def _prune(self, stored: _Stored) -> None:
        keep = {p.key for p in (stored.current, stored.previous) if p is not None}
        folder = self.folder / "profiles"
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name not in keep:
                    _remove_tree(child)


def _remove_tree(folder: Path) -> None:
    """``shutil.rmtree`` without loading shutil (and bz2, lzma) into the running agent."""
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            Path(root, name).unlink(missing_ok=True)
        for name in dirs:
            Path(root, name).rmdir()
    folder.rmdir()


def store_for(config: AgentConfig) -> RemoteStore:
    section = config.remote_config
    return RemoteStore(section.dir or config.buffer.path.parent / "remote")


def parse_push(args: dict[str, Any], push_id: str, now: float) -> Push:
    """The command's arguments as a Push; raises ConfigError naming the key."""
    unknown = sorted(set(args) - {"devices", "profiles"})
    if unknown:
        raise ConfigError([f"{SOURCE}: unknown argument(s) {', '.join(unknown)}"])
    devices, profiles = args.get("devices"), args.get("profiles", {})
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ConfigError([f"{SOURCE}: devices: expected a list of device entries"])
    if not isinstance(profiles, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in profiles.items()
    ):
        raise ConfigError([f"{SOURCE}: profiles: expected a mapping of name to profile"])
    bad = []
    for name in profiles:
        try:
            profile_path(Path("/"), name)
        except ConfigError:
            bad.append(f"{SOURCE}: profiles: {name!r} is not a profile name like river/x")
    if bad:
        raise ConfigError(bad)
    return Push(id=push_id, devices=devices, profiles=profiles, applied_at=now)


def build_pushed(
    config: AgentConfig, push: Push, profiles: Path
) -> tuple[AgentConfig, list[Device]]:
    """agent.yaml's config with the push's devices, and those devices with their drivers;
    raises ConfigError listing every problem (``apply-config: devices[1].profile: ...``)."""
    data = {"devices": push.devices}
    try:
        devices = convert(data, _Devices).devices
    except ValidationError as exc:
        raise ConfigError(problems(SOURCE, exc, data, model=_Devices)) from None
    except ValueError as exc:
        raise ConfigError([f"{SOURCE}: {exc}"]) from None
    pushed = msgspec.structs.replace(config, devices=devices)
    return pushed, build_devices(pushed, SOURCE, extra_profiles=profiles)


def in_force(
    config: AgentConfig, devices: list[Device], store: RemoteStore, now: float
) -> tuple[AgentConfig, list[Device], Push | None]:
    """At start: the pushed devices when a push is in force (rolled back first when it
    went unconfirmed too long), else agent.yaml's."""
    push = store.current()
    while push is not None:
        expired = now - push.applied_at > config.remote_config.rollback_after
        if not push.confirmed and expired:
            log.warning("pushed config %s was never confirmed by the broker: rolling back", push.id)
            push = store.rollback()
            continue
        try:
            pushed, built = build_pushed(config, push, store.profiles_dir(push))
        except ConfigError as exc:
            log.error(
                "pushed config %s can't be used any more (%s): rolling back",
                push.id,
                "; ".join(exc.problems),
            )
            push = store.rollback()
            continue
        return pushed, built, push
    return config, devices, None
