"""``seed``: put a gateway's bundle and its first-boot hooks on the boot partition of
a Raspberry Pi OS image or card, without mounting it.

Both first-boot paths Raspberry Pi OS uses are written, and either one installs:

- bookworm: ``firstrun.sh``, run by systemd from ``cmdline.txt``
  (``systemd.run=/boot/firmware/firstrun.sh ...``), unhooks itself afterwards;
- trixie: cloud-init's ``user-data`` (runcmd), ``network-config``, ``meta-data``.

Both call ``pantau/install.sh``, which is idempotent (the second caller finds the
agent installed and does nothing). An existing Imager ``firstrun.sh`` is kept and run
first; an existing ``user-data`` is merged (its users and keys are kept).
"""

import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from provisioning.bundle import PASSWORD_FILE, check_bundle
from provisioning.errors import ProvisionError
from provisioning.fat import FatVolume
from provisioning.gateways import check_text
from provisioning.mbr import boot_partition

BOOT = "/boot/firmware"
HOOK = (
    f"systemd.run={BOOT}/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)
_HOOK_PREFIXES = ("systemd.run=", "systemd.run_success_action=", "systemd.unit=kernel-command-line")
MARKER = "pantau-firstrun"
RUNCMD = ["bash", f"{BOOT}/pantau/install.sh", "cloud-init"]
_HOSTNAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
REPO_UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "pantau-agent.service"
REPO_DOC = Path(__file__).resolve().parents[1] / "docs" / "agent.md"
CONFIG_FILES = ("agent.yaml", PASSWORD_FILE, "ca.crt", "client.crt", "client.key")
SECRETS = ("agent.yaml", PASSWORD_FILE, "client.key")


@dataclass
class SeedOptions:
    wifi_ssid: str | None = None
    wifi_psk: str | None = None
    wifi_country: str = "ID"
    hostname: str | None = None
    wheelhouse: Path | None = None
    unit_file: Path | None = None


def hooked_cmdline(cmdline: str) -> str:
    """``cmdline.txt`` with our firstrun hook appended once (any older hook replaced)."""
    lines = [line for line in cmdline.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ProvisionError(f"cmdline.txt must be a single line, found {len(lines)}")
    kept = [t for t in lines[0].split() if not t.startswith(_HOOK_PREFIXES)]
    return " ".join([*kept, HOOK]) + "\n"


def merged_user_data(existing: bytes | None, hostname: str | None) -> str:
    """cloud-init user-data with our runcmd (and hostname), keeping what was there."""
    data: dict[str, Any] = {}
    if existing:
        text = existing.decode("utf-8", errors="replace")
        if text.lstrip().startswith("#cloud-config"):
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ProvisionError(f"the image's user-data is not valid YAML: {exc}") from None
            if isinstance(loaded, dict):
                data = loaded
    runcmd = [c for c in data.get("runcmd") or [] if c != RUNCMD]
    data["runcmd"] = [*runcmd, RUNCMD]
    if hostname:
        data["hostname"] = hostname
        data["manage_etc_hosts"] = True
    return "#cloud-config\n# pantau: runcmd installs the agent (written by pantau-provision)\n" + (
        yaml.safe_dump(data, sort_keys=False)
    )


def network_config(opts: SeedOptions) -> str:
    net: dict[str, Any] = {
        "version": 2,
        "ethernets": {"eth0": {"dhcp4": True, "optional": True}},
    }
    if opts.wifi_ssid:
        net["wifis"] = {
            "renderer": "NetworkManager",
            "wlan0": {
                "dhcp4": True,
                "optional": True,
                "regulatory-domain": opts.wifi_country,
                "access-points": {opts.wifi_ssid: {"password": opts.wifi_psk}},
            },
        }
    return "# written by pantau-provision\n" + yaml.safe_dump({"network": net}, sort_keys=False)


def find_unit(given: Path | None) -> tuple[str, str]:
    """The unit text and where it came from: --unit, the repository's, or the embedded one."""
    if given is not None:
        try:
            return given.read_text(encoding="utf-8"), str(given)
        except OSError as exc:
            raise ProvisionError(f"--unit {given}: {exc.strerror or exc}") from None
    if REPO_UNIT.exists():
        return REPO_UNIT.read_text(encoding="utf-8"), str(REPO_UNIT)
    text = resources.files("provisioning.firstboot").joinpath("pantau-agent.service").read_text()
    return text, "embedded"


def agent_doc() -> str | None:
    """docs/agent.md, for the gateway (the unit's ``Documentation=``): the repository's,
    or the copy in the wheel; None when neither is there."""
    if REPO_DOC.exists():
        return REPO_DOC.read_text(encoding="utf-8")
    embedded = resources.files("provisioning.firstboot").joinpath("agent.md")
    return embedded.read_text(encoding="utf-8") if embedded.is_file() else None


def unit_settings(unit: str) -> tuple[str, str, str]:
    """(service user, venv, agent binary) from the unit's ``User=`` and ``ExecStart=``."""
    user = "pantau"
    binary = "/opt/pantau/bin/pantau-agent"
    for line in unit.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "User" and value.strip():
            user = value.strip()
        elif key == "ExecStart" and value.strip():
            binary = shlex.split(value.strip().lstrip("-@+!:"))[0]
    if not binary.endswith("/pantau-agent"):
        raise ProvisionError(f"the unit's ExecStart does not run pantau-agent: {binary}")
    parent = Path(binary).parent
    venv = str(parent.parent) if parent.name == "bin" and parent.parent != Path("/usr") else ""
    if not venv or venv in ("/", "/usr", "/usr/local"):
        venv = "/opt/pantau"
    return user, venv, binary


def check_options(opts: SeedOptions) -> None:
    if opts.wifi_ssid and not opts.wifi_psk:
        raise ProvisionError("--wifi-ssid needs --wifi-psk (8-63 characters)")
    if opts.wifi_psk and not opts.wifi_ssid:
        raise ProvisionError("--wifi-psk needs --wifi-ssid")
    if opts.wifi_psk and not 8 <= len(opts.wifi_psk) <= 63:
        raise ProvisionError("--wifi-psk must be 8-63 characters (WPA2)")
    if opts.wifi_ssid:
        check_text(opts.wifi_ssid, "--wifi-ssid")
    if not _COUNTRY.match(opts.wifi_country):
        raise ProvisionError(f"--wifi-country {opts.wifi_country!r}: two capital letters, e.g. ID")
    if opts.hostname and not _HOSTNAME.match(opts.hostname):
        raise ProvisionError(
            f"--hostname {opts.hostname!r}: lowercase letters, digits and dashes only"
        )
    if opts.wheelhouse is not None and not any(opts.wheelhouse.glob("pantau-*.whl")):
        raise ProvisionError(
            f"--wheelhouse {opts.wheelhouse}: no pantau-*.whl in it "
            "(see docs/provisioning.md, 'Build the wheelhouse')"
        )


def seed(target: Path, bundle: Path, opts: SeedOptions) -> list[str]:
    """Write everything; returns notes for the technician (never a secret)."""
    check_options(opts)
    config = check_bundle(bundle)
    part = boot_partition(target)
    volume = FatVolume(target, part.offset)
    cmdline = volume.read("cmdline.txt")
    if cmdline is None:
        raise ProvisionError(
            f"{target}: partition {part.number} has no cmdline.txt; "
            "is this a Raspberry Pi OS image?"
        )
    unit, unit_source = find_unit(opts.unit_file)
    user, venv, binary = unit_settings(unit)
    notes = [f"{target}: boot partition {part.number} at byte {part.offset}"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pantau = root / "pantau"
        pantau.mkdir()
        present = [f for f in CONFIG_FILES if (bundle / f).exists()]
        for name in [*present, "gateway.json"]:
            if (bundle / name).exists():
                shutil.copyfile(bundle / name, pantau / name)
        settings = {
            "PANTAU_GATEWAY": config.gateway.id,
            "PANTAU_USER": user,
            "PANTAU_VENV": venv,
            "PANTAU_AGENT_BIN": binary,
            "PANTAU_FILES": " ".join(present),
            "PANTAU_SECRETS": " ".join(f for f in SECRETS if f in present),
            "PANTAU_HOSTNAME": opts.hostname or "",
            "PANTAU_WIFI_SSID": opts.wifi_ssid or "",
            "PANTAU_WIFI_PSK": opts.wifi_psk or "",
            "PANTAU_WIFI_COUNTRY": opts.wifi_country,
        }
        (pantau / "settings.env").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items())
        )
        firstboot = resources.files("provisioning.firstboot")
        (pantau / "install.sh").write_text(firstboot.joinpath("install.sh").read_text())
        (pantau / "pantau-agent.service").write_text(unit)
        doc = agent_doc()
        if doc is not None:
            (pantau / "agent.md").write_text(doc)
        if opts.wheelhouse is not None:
            wheels = pantau / "wheels"
            wheels.mkdir()
            for wheel in sorted(opts.wheelhouse.glob("*.whl")):
                shutil.copyfile(wheel, wheels / wheel.name)
            notes.append(f"{len(list(wheels.iterdir()))} wheel(s) copied to pantau/wheels/")
            if not any(wheels.glob("pip-*.whl")):
                notes.append(
                    "note: no pip wheel in the wheelhouse: the image must have python3-venv "
                    "(add one with `pip download --no-deps -d WHEELHOUSE pip`)"
                )
        else:
            notes.append(
                "WARNING: no --wheelhouse: first boot cannot install the agent "
                "until wheels are put in pantau/wheels/ on the boot partition"
            )

        existing_firstrun = volume.read("firstrun.sh")
        if existing_firstrun and MARKER.encode() not in existing_firstrun:
            (pantau / "imager-firstrun.sh").write_bytes(existing_firstrun)
            notes.append("kept the existing firstrun.sh as pantau/imager-firstrun.sh (runs first)")
        (root / "firstrun.sh").write_text(firstboot.joinpath("firstrun.sh").read_text())
        (root / "cmdline.txt").write_text(hooked_cmdline(cmdline.decode("utf-8", "replace")))
        (root / "user-data").write_text(merged_user_data(volume.read("user-data"), opts.hostname))
        if opts.wifi_ssid or volume.read("network-config") is None:
            (root / "network-config").write_text(network_config(opts))
        if volume.read("meta-data") is None:
            (root / "meta-data").write_text(
                f"instance-id: pantau-{config.gateway.id}\nlocal-hostname: "
                f"{opts.hostname or config.gateway.id}\n"
            )
        volume.put_tree(root)
    notes.append(f"systemd unit: {unit_source} (runs as {user!r}, agent in {venv})")
    notes.append(f"gateway {config.gateway.id} seeded: first boot installs and starts the agent")
    return notes
