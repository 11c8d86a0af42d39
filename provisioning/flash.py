"""``flash``: write a Raspberry Pi OS image (``.img`` or ``.img.xz``) to a card or an
image file, read it back and compare SHA-256 digests.

Safety: a target that is (or has a partition) mounted is refused, so is the disk that
holds ``/``; a target larger than ``confirm_above`` needs a "yes" typed at a terminal or
``--yes`` (no terminal and no ``--yes``: refused).
"""

import hashlib
import lzma
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from provisioning.errors import ProvisionError, RefusedError
from provisioning.progress import Progress, human

CHUNK = 4 * 1024 * 1024
CONFIRM_ABOVE = 128 * 1024**3  # larger than any common SD card: maybe not the card


@dataclass
class FlashResult:
    size: int
    sha256: str


# ---- which device is this ----------------------------------------------------------


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(text: str) -> list[tuple[str, str]]:
    """(source, mount point) for each line of /proc/mounts."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            out.append((_unescape(fields[0]), _unescape(fields[1])))
    return out


def parent_disk(name: str) -> str:
    """``sdb1`` → ``sdb``, ``mmcblk0p2`` → ``mmcblk0``, ``nvme0n1p1`` → ``nvme0n1``."""
    m = re.match(r"^(.*\d)p\d+$", name)
    if m and re.match(r"^(mmcblk|nvme|loop|md|nbd)", name):
        return m.group(1)
    m = re.match(r"^((?:sd|hd|vd|xvd)[a-z]+)\d+$", name)
    return m.group(1) if m else name


def _disk_of(path: str) -> str:
    return parent_disk(Path(path).name)


def mounted_parts(device: str, mounts_text: str) -> list[str]:
    """Mount points of ``device`` itself or of any of its partitions."""
    disk = _disk_of(device)
    found = []
    for source, point in mounts(mounts_text):
        if source.startswith("/dev/") and disk in (
            _disk_of(os.path.realpath(source)),
            _disk_of(source),
        ):
            found.append(point)
    return found


def is_system_disk(device: str, mounts_text: str) -> bool:
    """True when ``device`` is the disk that holds ``/`` (or ``/boot``, ``/boot/firmware``)."""
    disk = _disk_of(device)
    for source, point in mounts(mounts_text):
        if (
            point in ("/", "/boot", "/boot/firmware", "/usr")
            and source.startswith("/dev/")
            and disk in (_disk_of(os.path.realpath(source)), _disk_of(source))
        ):
            return True
    return False


def check_target(
    target: Path,
    mounts_text: str,
    *,
    size: int,
    confirm_above: int,
    yes: bool,
    ask: Callable[[str], bool] | None,
) -> None:
    """Raise RefusedError unless it is safe to overwrite ``target``."""
    real = os.path.realpath(target)
    try:
        is_block = stat.S_ISBLK(os.stat(real).st_mode)
    except FileNotFoundError:
        is_block = False
    if is_block:
        name = Path(real).name
        if parent_disk(name) != name:
            raise RefusedError(
                f"{target} is a partition: give the whole card (/dev/{parent_disk(name)})"
            )
        if is_system_disk(real, mounts_text):
            raise RefusedError(f"{target} holds this computer's own system (/): refusing")
        points = mounted_parts(real, mounts_text)
        if points:
            raise RefusedError(
                f"{target} is mounted at {', '.join(points)}: unmount it first "
                f"(e.g. `sudo umount {' '.join(points)}`)"
            )
    if size > confirm_above and not yes:
        question = (
            f"{target} is {human(size)}, larger than {human(confirm_above)}: "
            "is this really the card to erase?"
        )
        if ask is None:
            raise RefusedError(f"{question} Refusing without a terminal; pass --yes if it is.")
        if not ask(question):
            raise RefusedError("not confirmed; nothing written")


def target_size(target: Path) -> int:
    try:
        with open(target, "rb") as f:
            return f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise ProvisionError(f"{target}: cannot open: {exc.strerror or exc}") from None


# ---- writing ---------------------------------------------------------------------------


class _Counting:
    """Wraps the compressed file to report how far into it we are."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data

    def readable(self) -> bool:
        return True


def image_chunks(image: Path, on_read: Callable[[int, float], None]) -> Iterator[bytes]:
    """The image's bytes in chunks (xz decompressed on the fly); ``on_read(done, fraction)``."""
    total = image.stat().st_size or 1
    with open(image, "rb") as raw:
        counting = _Counting(raw)
        if image.name.endswith(".xz"):
            stream: BinaryIO = cast(BinaryIO, lzma.LZMAFile(cast(BinaryIO, counting)))  # noqa: SIM115
        else:
            stream = raw
        done = 0
        try:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                done += len(chunk)
                position = counting.count if stream is not raw else done
                on_read(done, position / total)
                yield chunk
        except lzma.LZMAError as exc:
            raise ProvisionError(f"{image}: damaged xz file: {exc}") from None
        except EOFError:
            raise ProvisionError(
                f"{image}: the xz file is cut short (incomplete download?)"
            ) from None


def flash(image: Path, target: Path, show_progress: bool = True) -> FlashResult:
    """Write ``image`` to ``target`` (no safety checks here: see ``check_target``)."""
    if not image.is_file():
        raise ProvisionError(f"{image}: no such image file")
    device = target.exists() and stat.S_ISBLK(os.stat(target).st_mode)
    bar = Progress("writing ", None) if show_progress else None
    digest = hashlib.sha256()
    written = 0
    flags = os.O_WRONLY | (0 if device else os.O_CREAT | os.O_TRUNC)
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise ProvisionError(f"{target}: cannot open for writing: {exc.strerror or exc}") from None
    try:
        for chunk in image_chunks(image, lambda d, f: bar.update(d, f) if bar else None):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            written += len(chunk)
        os.fsync(fd)
    except OSError as exc:
        raise ProvisionError(f"{target}: write failed after {written} bytes: {exc}") from None
    finally:
        os.close(fd)
    if bar:
        bar.finish()
    expected = digest.hexdigest()
    got = read_back(target, written, show_progress)
    if got != expected:
        raise ProvisionError(
            f"{target}: verification FAILED: wrote {expected[:16]}…, read back {got[:16]}… "
            "(a bad card or reader? try another card)"
        )
    return FlashResult(written, expected)


def read_back(target: Path, size: int, show_progress: bool = True) -> str:
    """SHA-256 of the first ``size`` bytes of ``target``, bypassing the page cache."""
    bar = Progress("verifying", size) if show_progress else None
    digest = hashlib.sha256()
    done = 0
    with open(target, "rb", buffering=0) as f:
        try:  # drop cached pages so we read what is really on the card
            os.posix_fadvise(f.fileno(), 0, size, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):
            pass
        while done < size:
            chunk = f.read(min(CHUNK, size - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
            if bar:
                bar.update(done)
    if bar:
        bar.finish()
    return digest.hexdigest()
