"""Fixtures for provisioning: the CLI run in-process with a secret-leak check on every
call, a small real HTTP server standing in for central's API, real disk images."""

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provisioning.cli import main

TOKEN = "tok-SUPERSECRET-0123456789abcdef"
WIFI_PSK = "wifi-psk-TOPSECRET-42"
SECRET_NAMES = ("mqtt.password", "central.password", "client.key", "server.key", "ca.key")


def secrets_under(root: Path) -> set[str]:
    """Every secret a command might leak: passwords and the body lines of private keys."""
    found = {TOKEN, WIFI_PSK}
    for name in SECRET_NAMES:
        for path in root.rglob(name):
            for raw in path.read_text().splitlines():
                line = raw.strip()
                if line and not line.startswith("-----"):
                    found.add(line)
    return found


@dataclass
class Result:
    rc: int
    out: str
    err: str


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> Callable[..., Result]:
    """Run ``pantau-provision`` in-process with state in tmp; assert no secret is printed."""
    monkeypatch.setenv("PANTAU_PROVISION_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("PANTAU_CENTRAL_TOKEN", raising=False)

    def _run(*argv: str) -> Result:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        for secret in secrets_under(tmp_path):
            assert secret not in out and secret not in err, f"a secret leaked: {argv}"
        return Result(rc, out, err)

    return _run


@dataclass
class FakeCentral:
    """Records requests; answers POST /api/v1/gateways and GET /api/v1/gateways/ID."""

    url: str = ""
    requests: list[dict] = field(default_factory=list)
    gateways: dict[str, dict] = field(default_factory=dict)
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, gateway_id: str, at: float) -> None:
        with self.lock:
            self.gateways.setdefault(gateway_id, {"id": gateway_id})["last_seen"] = at


@pytest.fixture
def central() -> Iterator[FakeCentral]:
    fake = FakeCentral()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"detail": "bad token"})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"null")
            fake.requests.append({"method": "POST", "path": self.path, "json": body})
            if not self._authorized():
                return
            if fake.fail_status:
                self._reply(fake.fail_status, {"detail": "central is unwell"})
                return
            if self.path != "/api/v1/gateways" or not isinstance(body, dict):
                self._reply(404, {"detail": "not found"})
                return
            if set(body) != {"id", "site", "name", "location", "timezone"}:
                self._reply(422, {"detail": f"unexpected keys {sorted(body)}"})
                return
            with fake.lock:
                if body["id"] in fake.gateways:
                    self._reply(409, {"detail": "exists"})
                    return
                fake.gateways[body["id"]] = {**body, "last_seen": None}
            self._reply(201, body)

        def do_GET(self) -> None:
            fake.requests.append({"method": "GET", "path": self.path})
            if not self._authorized():
                return
            gateway_id = self.path.removeprefix("/api/v1/gateways/")
            with fake.lock:
                record = fake.gateways.get(gateway_id)
            if record is None:
                self._reply(404, {"detail": "no such gateway"})
            else:
                self._reply(200, record)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


BOOT_START = 2048  # sectors: 1 MiB, as Raspberry Pi OS images
BOOT_SECTORS = 131072  # 64 MiB
CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 "
    "fsck.repair=yes rootwait quiet"
)


def mtools_env() -> dict[str, str]:
    import os

    return {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}


def build_pi_image(path: Path, extra_boot: dict[str, bytes] | None = None) -> int:
    """A Raspberry-Pi-OS-shaped disk image: MBR, FAT32 boot (cmdline.txt, config.txt),
    a Linux root partition placeholder. Returns the boot partition's byte offset."""
    for tool in ("sfdisk", "mkfs.vfat", "mcopy"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} not installed (apt-get install fdisk dosfstools mtools)")
    size_mb = 96
    with open(path, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)
    table = (
        "label: dos\nlabel-id: 0x1234abcd\n"
        f"start={BOOT_START}, size={BOOT_SECTORS}, type=c\n"
        f"start={BOOT_START + BOOT_SECTORS}, type=83\n"
    )
    subprocess.run(["sfdisk", "-q", str(path)], input=table.encode(), check=True)
    subprocess.run(
        [
            "mkfs.vfat",
            "-F",
            "32",
            "-n",
            "BOOTFS",
            "--offset",
            str(BOOT_START),
            str(path),
            str(BOOT_SECTORS // 2),
        ],
        check=True,
        capture_output=True,
    )
    offset = BOOT_START * 512
    with open(path, "r+b") as f:  # something recognisable in the root placeholder
        f.seek(offset + BOOT_SECTORS * 512)
        f.write(b"ROOTFS-PLACEHOLDER" * 100)
    files = {"cmdline.txt": (CMDLINE + "\n").encode(), "config.txt": b"[all]\narm_64bit=1\n"}
    files.update(extra_boot or {})
    staging = path.parent / f"{path.name}.boot"
    staging.mkdir()
    for name, data in files.items():
        (staging / name).write_bytes(data)
        subprocess.run(
            ["mcopy", "-i", f"{path}@@{offset}", str(staging / name), f"::/{name}"],
            check=True,
            env=mtools_env(),
        )
    shutil.rmtree(staging)
    return offset


def fat_read(image: Path, offset: int, name: str) -> bytes:
    proc = subprocess.run(
        ["mcopy", "-n", "-i", f"{image}@@{offset}", f"::/{name}", "-"],
        capture_output=True,
        env=mtools_env(),
        check=True,
    )
    return proc.stdout


def fat_list(image: Path, offset: int) -> list[str]:
    proc = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{image}@@{offset}", "::/"],
        capture_output=True,
        env=mtools_env(),
        check=True,
    )
    return [line.removeprefix("::/") for line in proc.stdout.decode().splitlines() if line]
