"""flash: an .img and an .img.xz into an image file, read back and verified; the
safety checks against /proc/mounts content."""

import hashlib
import lzma
import os
from pathlib import Path

import pytest

from provisioning.errors import RefusedError
from provisioning.flash import check_target, is_system_disk, mounted_parts, parent_disk
from tests.provisioning.conftest import build_pi_image, fat_read

MOUNTS = """\
/dev/mmcblk0p2 / ext4 rw,noatime 0 0
/dev/mmcblk0p1 /boot/firmware vfat rw,relatime 0 0
/dev/sdb1 /media/tech/bootfs vfat rw,nosuid,nodev 0 0
/dev/nvme0n1p3 /srv/data\\040disk ext4 rw 0 0
tmpfs /run tmpfs rw 0 0
proc /proc proc rw 0 0
"""


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "raspios.img"
    build_pi_image(path)
    return path


def test_flash_img_into_an_image_file_and_verify(run, tmp_path: Path, image: Path) -> None:
    target = tmp_path / "card.img"
    r = run("flash", image, target, "--yes")
    assert r.rc == 0, r.err
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    assert f"sha256 {expected}" in r.out
    assert target.read_bytes() == image.read_bytes()
    assert "verifying" in r.err and "100%" in r.err  # the progress bar, on stderr


def test_flash_img_xz_stream_decompressed(run, tmp_path: Path, image: Path) -> None:
    xz = tmp_path / "raspios.img.xz"
    xz.write_bytes(lzma.compress(image.read_bytes(), preset=0))
    target = tmp_path / "card.img"
    target.write_bytes(b"old card content" * 7_000_000)  # longer than the image: fine
    r = run("flash", xz, target, "--yes")
    assert r.rc == 0, r.err
    assert target.read_bytes()[: image.stat().st_size] == image.read_bytes()
    # and the flashed card is seedable: the boot partition reads back
    assert fat_read(target, 2048 * 512, "config.txt") == b"[all]\narm_64bit=1\n"


def test_a_damaged_xz_is_reported(run, tmp_path: Path, image: Path) -> None:
    data = lzma.compress(image.read_bytes(), preset=0)
    xz = tmp_path / "cut.img.xz"
    xz.write_bytes(data[: len(data) // 2])
    r = run("flash", xz, tmp_path / "card.img", "--yes", "--no-progress")
    assert r.rc == 1 and "cut short" in r.err


def test_large_target_needs_yes_without_a_terminal(run, tmp_path: Path, image: Path) -> None:
    target = tmp_path / "big.img"
    with open(target, "wb") as f:
        f.truncate(300 * 1024 * 1024)
    r = run("flash", image, target, "--confirm-above", "200M")
    assert r.rc == 1 and "--yes" in r.err
    with open(target, "rb") as f:
        assert f.read(512) == bytes(512)  # untouched
    assert run("flash", image, target, "--confirm-above", "200M", "--yes", "--no-progress").rc == 0


def test_confirmation_question(tmp_path: Path) -> None:
    target = tmp_path / "t.img"
    target.write_bytes(b"x")
    asked: list[str] = []

    def no(q: str) -> bool:
        asked.append(q)
        return False

    with pytest.raises(RefusedError, match="not confirmed"):
        check_target(target, "", size=10, confirm_above=5, yes=False, ask=no)
    assert asked and "is this really the card" in asked[0]
    check_target(target, "", size=10, confirm_above=5, yes=False, ask=lambda q: True)
    check_target(target, "", size=10, confirm_above=5, yes=True, ask=None)
    check_target(target, "", size=4, confirm_above=5, yes=False, ask=None)


def test_parent_disk_names() -> None:
    assert parent_disk("sdb1") == "sdb"
    assert parent_disk("sdb") == "sdb"
    assert parent_disk("mmcblk0p2") == "mmcblk0"
    assert parent_disk("mmcblk0") == "mmcblk0"
    assert parent_disk("nvme0n1p3") == "nvme0n1"
    assert parent_disk("nvme0n1") == "nvme0n1"
    assert parent_disk("loop0p1") == "loop0"


def test_mounted_partitions_are_found() -> None:
    assert mounted_parts("/dev/sdb", MOUNTS) == ["/media/tech/bootfs"]
    assert mounted_parts("/dev/nvme0n1", MOUNTS) == ["/srv/data disk"]
    assert mounted_parts("/dev/sdc", MOUNTS) == []
    assert sorted(mounted_parts("/dev/mmcblk0", MOUNTS)) == ["/", "/boot/firmware"]


def test_the_system_disk_is_recognised() -> None:
    assert is_system_disk("/dev/mmcblk0", MOUNTS)
    assert not is_system_disk("/dev/sdb", MOUNTS)
    assert is_system_disk("/dev/sda", "/dev/sda2 / ext4 rw 0 0\n")
    assert not is_system_disk("/dev/sda", "overlay / overlay rw 0 0\n")


def _block_device(tmp_path: Path, name: str, minor: int) -> Path:
    path = tmp_path / name
    try:
        os.mknod(path, 0o600 | 0o060000, os.makedev(8, minor))  # S_IFBLK
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a block device node here: {exc}")
    return path


def test_flash_refuses_mounted_system_and_partition_devices(tmp_path: Path) -> None:
    sdb = _block_device(tmp_path, "sdb", 16)
    with pytest.raises(RefusedError, match="mounted at /media/tech/bootfs"):
        check_target(sdb, MOUNTS, size=8 << 30, confirm_above=1 << 40, yes=True, ask=None)
    mmc = _block_device(tmp_path, "mmcblk0", 0)
    with pytest.raises(RefusedError, match="system"):
        check_target(mmc, MOUNTS, size=8 << 30, confirm_above=1 << 40, yes=True, ask=None)
    part = _block_device(tmp_path, "sdc1", 33)
    with pytest.raises(RefusedError, match="partition"):
        check_target(part, "", size=8 << 30, confirm_above=1 << 40, yes=True, ask=None)
    sdc = _block_device(tmp_path, "sdc", 32)
    check_target(sdc, MOUNTS, size=8 << 30, confirm_above=1 << 40, yes=True, ask=None)
