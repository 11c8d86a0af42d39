"""seed: a REAL disk image (MBR, FAT32 boot partition, root placeholder), read back
without mounting."""

import struct
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from provisioning.errors import ProvisionError
from provisioning.mbr import boot_partition, parse_mbr
from provisioning.seed import HOOK, hooked_cmdline, merged_user_data
from tests.provisioning.conftest import (
    BOOT_START,
    CMDLINE,
    WIFI_PSK,
    build_pi_image,
    fat_list,
    fat_read,
)

ROOT = Path(__file__).resolve().parents[2]
BROKER = "mqtt://broker.example:1883"
OLD_HOOK = (
    "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot "
    "systemd.unit=kernel-command-line.target"
)


@pytest.fixture
def bundle(run, tmp_path: Path) -> Path:
    assert (
        run(
            "gateway",
            "add",
            "gw-seed-01",
            "--site",
            "Ambon",
            "--broker",
            BROKER,
            "--out",
            tmp_path / "bundles",
        ).rc
        == 0
    )
    return tmp_path / "bundles" / "gw-seed-01"


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "pantau-0.1.0-py3-none-any.whl").write_bytes(b"PK fake pantau wheel")
    (
        wheels / "pydantic_core-2.27.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    ).write_bytes(b"PK core")
    return wheels


def test_mbr_parser_finds_the_partitions(tmp_path: Path) -> None:
    image = tmp_path / "pi.img"
    offset = build_pi_image(image)
    parts = parse_mbr(image.read_bytes()[:512])
    assert [(p.number, p.type, p.start) for p in parts] == [
        (1, 0x0C, BOOT_START),
        (2, 0x83, BOOT_START + 131072),
    ]
    assert boot_partition(image).offset == offset


def test_mbr_parser_rejects_what_is_not_an_mbr() -> None:
    with pytest.raises(ProvisionError, match="no MBR"):
        parse_mbr(bytes(512))
    gpt = bytearray(512)
    gpt[510:512] = b"\x55\xaa"
    gpt[446 + 4] = 0xEE
    struct.pack_into("<II", gpt, 446 + 8, 1, 1000)
    with pytest.raises(ProvisionError, match="GPT"):
        parse_mbr(bytes(gpt))


def test_seed_writes_both_first_boot_paths(
    run, tmp_path: Path, bundle: Path, wheelhouse: Path
) -> None:
    image = tmp_path / "pi.img"
    offset = build_pi_image(image)
    r = run(
        "seed",
        image,
        "--bundle",
        bundle,
        "--wheelhouse",
        wheelhouse,
        "--wifi-ssid",
        "Kantor Lurah",
        "--wifi-psk",
        WIFI_PSK,
        "--hostname",
        "gw-seed-01",
    )
    assert r.rc == 0, r.err
    # bookworm: cmdline.txt still one line, with the firstrun hook appended
    cmdline = fat_read(image, offset, "cmdline.txt").decode()
    assert cmdline == f"{CMDLINE} {HOOK}\n"
    assert "systemd.run=/boot/firmware/firstrun.sh" in cmdline
    firstrun = fat_read(image, offset, "firstrun.sh").decode()
    assert "pantau/install.sh" in firstrun and "pantau-firstrun" in firstrun
    # trixie: cloud-init
    user_data = fat_read(image, offset, "user-data").decode()
    assert user_data.startswith("#cloud-config\n")
    parsed = yaml.safe_load(user_data)
    assert ["bash", "/boot/firmware/pantau/install.sh", "cloud-init"] in parsed["runcmd"]
    assert parsed["hostname"] == "gw-seed-01"
    net = yaml.safe_load(fat_read(image, offset, "network-config"))["network"]
    assert net["version"] == 2
    assert net["wifis"]["wlan0"]["access-points"]["Kantor Lurah"]["password"] == WIFI_PSK
    assert net["wifis"]["wlan0"]["regulatory-domain"] == "ID"
    assert "instance-id: pantau-gw-seed-01" in fat_read(image, offset, "meta-data").decode()
    # the bundle, the installer, the unit and the wheelhouse
    files = fat_list(image, offset)
    for name in (
        "pantau/agent.yaml",
        "pantau/mqtt.password",
        "pantau/install.sh",
        "pantau/pantau-agent.service",
        "pantau/agent.md",
        "pantau/settings.env",
        "pantau/wheels/pantau-0.1.0-py3-none-any.whl",
        "pantau/wheels/pydantic_core-2.27.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    ):
        assert name in files, name
    assert fat_read(image, offset, "pantau/agent.yaml") == (bundle / "agent.yaml").read_bytes()
    assert (
        fat_read(image, offset, "pantau/mqtt.password") == (bundle / "mqtt.password").read_bytes()
    )
    # the manual first boot installs where the unit's Documentation= points
    assert fat_read(image, offset, "pantau/agent.md") == (ROOT / "docs" / "agent.md").read_bytes()
    install = fat_read(image, offset, "pantau/install.sh").decode()
    packaged = resources.files("provisioning.firstboot").joinpath("install.sh").read_text()
    assert install == packaged
    assert 'install --no-index --no-cache-dir \\\n    --find-links "$SRC/wheels"' in install
    assert 'install -m 600 -o "$PANTAU_USER"' in install
    settings = fat_read(image, offset, "pantau/settings.env").decode()
    assert "PANTAU_USER=pantau" in settings
    assert "PANTAU_SECRETS='agent.yaml mqtt.password'" in settings
    # config.txt untouched; the root partition placeholder untouched
    assert fat_read(image, offset, "config.txt") == b"[all]\narm_64bit=1\n"
    assert image.read_bytes()[offset + 131072 * 512 :][:18] == b"ROOTFS-PLACEHOLDER"
    # the FAT file system is still consistent
    part = tmp_path / "boot-partition.img"
    with open(image, "rb") as src:
        src.seek(offset)
        part.write_bytes(src.read(131072 * 512))
    fsck = subprocess.run(
        ["fsck.vfat", "-n", str(part)], capture_output=True, text=True, check=False
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_install_script_is_valid_bash() -> None:
    from importlib import resources

    for name in ("install.sh", "firstrun.sh"):
        text = resources.files("provisioning.firstboot").joinpath(name).read_text()
        proc = subprocess.run(
            ["bash", "-n"], input=text, text=True, capture_output=True, check=False
        )
        assert proc.returncode == 0, (name, proc.stderr)


def test_seed_notes_a_missing_pip_wheel(run, tmp_path: Path, bundle: Path, wheelhouse) -> None:
    image = tmp_path / "pi.img"
    build_pi_image(image)
    r = run("seed", image, "--bundle", bundle, "--wheelhouse", wheelhouse)
    assert r.rc == 0 and "no pip wheel" in r.out + r.err
    (wheelhouse / "pip-24.0-py3-none-any.whl").write_bytes(b"PK pip")
    r = run("seed", image, "--bundle", bundle, "--wheelhouse", wheelhouse)
    assert r.rc == 0 and "no pip wheel" not in r.out + r.err


def test_seeding_twice_hooks_cmdline_once(run, tmp_path: Path, bundle: Path, wheelhouse) -> None:
    image = tmp_path / "pi.img"
    offset = build_pi_image(image)
    for _ in range(2):
        assert run("seed", image, "--bundle", bundle, "--wheelhouse", wheelhouse).rc == 0
    cmdline = fat_read(image, offset, "cmdline.txt").decode()
    assert cmdline.count("systemd.run=") == 1
    assert cmdline.count("\n") == 1
    runcmd = yaml.safe_load(fat_read(image, offset, "user-data"))["runcmd"]
    assert runcmd.count(["bash", "/boot/firmware/pantau/install.sh", "cloud-init"]) == 1


def test_imager_files_are_kept(run, tmp_path: Path, bundle: Path, wheelhouse) -> None:
    imager_firstrun = b"#!/bin/bash\n# written by Raspberry Pi Imager\nuseradd tech\n"
    imager_user_data = (
        b"#cloud-config\nusers:\n- name: tech\n  ssh_authorized_keys: [ssh-ed25519 AAAA]\n"
    )
    image = tmp_path / "pi.img"
    offset = build_pi_image(
        image,
        {
            "firstrun.sh": imager_firstrun,
            "user-data": imager_user_data,
            "cmdline.txt": (f"{CMDLINE} {OLD_HOOK}\n").encode(),
        },
    )
    assert run("seed", image, "--bundle", bundle, "--wheelhouse", wheelhouse).rc == 0
    assert fat_read(image, offset, "pantau/imager-firstrun.sh") == imager_firstrun
    merged = yaml.safe_load(fat_read(image, offset, "user-data"))
    assert merged["users"][0]["name"] == "tech"
    assert fat_read(image, offset, "cmdline.txt").decode() == f"{CMDLINE} {HOOK}\n"


def test_seed_refuses_what_is_not_a_pi_image(run, tmp_path: Path, bundle: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    r = run("seed", blank, "--bundle", bundle)
    assert r.rc == 1 and "no MBR partition table" in r.err
    r = run("seed", tmp_path / "pi.img", "--bundle", bundle, "--wifi-ssid", "x")
    assert r.rc == 1 and "--wifi-psk" in r.err
    bad_wheels = tmp_path / "empty-wheels"
    bad_wheels.mkdir()
    image = tmp_path / "pi.img"
    build_pi_image(image)
    r = run("seed", image, "--bundle", bundle, "--wheelhouse", bad_wheels)
    assert r.rc == 1 and "no pantau-*.whl" in r.err


def test_cmdline_and_user_data_helpers() -> None:
    assert hooked_cmdline("a b\n") == f"a b {HOOK}\n"
    assert hooked_cmdline(hooked_cmdline("a b")) == f"a b {HOOK}\n"
    with pytest.raises(ProvisionError, match="single line"):
        hooked_cmdline("a\nb\n")
    assert yaml.safe_load(merged_user_data(b"not cloud config", None))["runcmd"]


def test_unit_settings_pick_user_and_venv() -> None:
    from provisioning.seed import unit_settings

    unit = "[Service]\nUser=pantau\nExecStart=/usr/local/bin/pantau-agent run -c /etc/a.yaml\n"
    assert unit_settings(unit) == ("pantau", "/opt/pantau", "/usr/local/bin/pantau-agent")
    unit = "[Service]\nUser=agent\nExecStart=/srv/venv/bin/pantau-agent run\n"
    assert unit_settings(unit) == ("agent", "/srv/venv", "/srv/venv/bin/pantau-agent")
    with pytest.raises(ProvisionError, match="does not run pantau-agent"):
        unit_settings("[Service]\nExecStart=/bin/true\n")


def test_a_wheel_install_seeds_the_same_unit_as_the_repository() -> None:
    from importlib import resources

    from provisioning.seed import REPO_UNIT

    embedded = resources.files("provisioning.firstboot").joinpath("pantau-agent.service")
    assert embedded.read_text() == REPO_UNIT.read_text()
    assert "Type=notify\n" in embedded.read_text()


def test_the_repository_unit_is_used_when_present(run, tmp_path, bundle, wheelhouse) -> None:
    from provisioning.seed import REPO_UNIT, find_unit

    text, source = find_unit(None)
    if REPO_UNIT.exists():
        assert source == str(REPO_UNIT) and text == REPO_UNIT.read_text()
    else:
        assert source == "embedded"
    image = tmp_path / "pi.img"
    offset = build_pi_image(image)
    own = tmp_path / "own.service"
    own.write_text("[Service]\nUser=svc\nExecStart=/opt/x/bin/pantau-agent run\n")
    assert run("seed", image, "--bundle", bundle, "--wheelhouse", wheelhouse, "--unit", own).rc == 0
    assert fat_read(image, offset, "pantau/pantau-agent.service") == own.read_bytes()
    settings = fat_read(image, offset, "pantau/settings.env").decode()
    assert "PANTAU_USER=svc\n" in settings and "PANTAU_VENV=/opt/x\n" in settings
