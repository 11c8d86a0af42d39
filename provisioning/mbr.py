"""The MBR partition table: 4 entries of 16 bytes at byte 446, signature 55 AA at 510."""

import struct
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ProvisionError

SECTOR = 512
FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
GPT_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class Partition:
    number: int  # 1-4
    type: int
    start: int  # first sector (LBA)
    sectors: int
    bootable: bool

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size(self) -> int:
        return self.sectors * SECTOR

    @property
    def is_fat(self) -> bool:
        return self.type in FAT_TYPES


def parse_mbr(sector: bytes, source: str = "image") -> list[Partition]:
    """The used primary partitions of a 512-byte MBR; ProvisionError if it is not one."""
    if len(sector) < SECTOR:
        raise ProvisionError(f"{source}: too small to hold a partition table")
    if sector[510:512] != b"\x55\xaa":
        raise ProvisionError(f"{source}: no MBR partition table (not a Raspberry Pi OS image?)")
    parts = []
    for i in range(4):
        entry = sector[446 + 16 * i : 446 + 16 * (i + 1)]
        status, ptype = entry[0], entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if ptype == 0 or count == 0:
            continue
        if ptype == GPT_PROTECTIVE:
            raise ProvisionError(f"{source}: a GPT disk; Raspberry Pi OS images use MBR")
        if status not in (0x00, 0x80):
            raise ProvisionError(f"{source}: partition {i + 1} has a bad status byte {status:#x}")
        parts.append(Partition(i + 1, ptype, start, count, status == 0x80))
    return parts


def boot_partition(target: Path) -> Partition:
    """The first FAT partition of an image file or card: Raspberry Pi OS's boot partition."""
    try:
        with open(target, "rb") as f:
            head = f.read(SECTOR)
            end = f.seek(0, 2)
    except OSError as exc:
        raise ProvisionError(f"{target}: cannot read: {exc.strerror or exc}") from None
    parts = parse_mbr(head, str(target))
    fat = next((p for p in parts if p.is_fat), None)
    if fat is None:
        raise ProvisionError(f"{target}: no FAT boot partition in the partition table")
    if fat.offset + fat.size > end:
        raise ProvisionError(
            f"{target}: partition {fat.number} ends past the end of the image "
            f"({fat.offset + fat.size} > {end} bytes); is the image complete?"
        )
    return fat
