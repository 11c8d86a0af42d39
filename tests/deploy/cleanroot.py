"""A throw-away root file system for install tests: this machine's ``/`` seen through
an overlay, entered with ``chroot`` in private mount, network and hostname namespaces.

Everything a command writes there (users, /etc, /opt, /usr/local/bin) lands in the
overlay's upper directory, never on this machine; there is no network (only the
files already on disk, such as a wheelhouse); ``/run`` is empty, so systemd is not
running inside, as in an image build or a chroot. Needs root, ``unshare`` and
overlayfs: the same tools ``scripts/firstboot-check`` uses, without debootstrap.
"""

import os
import shutil
import subprocess
from pathlib import Path

ENV = {  # what root's login shell or systemd gives a command on Debian
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
}


def available() -> str | None:
    """Why a clean root can't be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (overlay mount in a private mount namespace)"
    for tool in ("unshare", "chroot", "mount", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class CleanRoot:
    def __init__(self, base: Path) -> None:
        self.upper = base / "upper"
        self.work = base / "work"
        self.merged = base / "merged"
        for d in (self.upper, self.work, self.merged):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, inside: str) -> Path:
        """Where a file written inside the root is kept (the overlay's upper layer)."""
        return self.upper / inside.lstrip("/")

    def run(
        self, *argv: str | Path, user: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as root (or ``user``) inside the clean root; output captured."""
        merged = self.merged
        setup = (
            f"mount -t overlay overlay -o lowerdir=/,upperdir={self.upper},"
            f"workdir={self.work} {merged}"
            f" && mount --rbind /dev {merged}/dev"
            f" && mount -t proc proc {merged}/proc"
            f" && mount -t tmpfs tmpfs {merged}/run"
            f' && exec chroot {merged} "$@"'
        )
        command = [str(a) for a in argv]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        return subprocess.run(
            ["unshare", "--mount", "--net", "--uts", "sh", "-c", setup, "sh", *command],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def remove(self) -> None:
        shutil.rmtree(self.upper.parent, ignore_errors=True)
