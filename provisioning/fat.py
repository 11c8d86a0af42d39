"""Files on a FAT partition inside an image or card, without mounting it: mtools
(``mcopy -i IMAGE@@OFFSET``). mtools handles the 8.3 and long names real Raspberry Pi
OS images carry; it is a runtime dependency (``apt-get install mtools``)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from provisioning.errors import ProvisionError


class FatVolume:
    def __init__(self, target: Path, offset: int) -> None:
        self.target = target
        self.offset = offset

    @property
    def image(self) -> str:
        return f"{self.target}@@{self.offset}"

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        binary = shutil.which(tool)
        if binary is None:
            raise ProvisionError(
                f"{tool} is not installed: run `sudo apt-get install -y mtools` and try again"
            )
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
        return subprocess.run(
            [binary, "-i", self.image, *args], check=False, capture_output=True, env=env
        )

    def read(self, path: str) -> bytes | None:
        """The file's bytes, None if it does not exist."""
        proc = self._run("mcopy", "-n", f"::/{path}", "-")
        if proc.returncode != 0:
            if b"not found" in proc.stderr:
                return None
            raise ProvisionError(f"{self.image}: cannot read {path}: {_err(proc)}")
        return proc.stdout

    def files(self) -> list[str]:
        """Every path on the volume, ``dir/`` for directories."""
        proc = self._run("mdir", "-/", "-b", "::/")
        if proc.returncode != 0:
            raise ProvisionError(f"{self.image}: not a readable FAT file system: {_err(proc)}")
        return [line.removeprefix("::/") for line in proc.stdout.decode().splitlines() if line]

    def put_tree(self, local: Path) -> None:
        """Copy every entry of the local directory ``local`` to the volume's root."""
        items = [str(p) for p in sorted(local.iterdir())]
        if not items:
            return
        proc = self._run("mcopy", "-s", "-o", "-D", "o", "-Q", *items, "::/")
        if proc.returncode != 0:
            raise ProvisionError(f"{self.image}: cannot write: {_err(proc)}")

    def write(self, path: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            local.write_bytes(data)
            proc = self._run("mcopy", "-o", "-D", "o", str(local), f"::/{path}")
        if proc.returncode != 0:
            raise ProvisionError(f"{self.image}: cannot write {path}: {_err(proc)}")


def _err(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
