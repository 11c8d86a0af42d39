"""Installing as the docs say, in a clean root (tests/deploy/cleanroot.py): central with
``deploy/install-central.sh --wheelhouse``, a gateway with the first-boot installer that
``pantau-provision seed`` puts on the card; the units' commands run as their user."""

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.cli import main as provision
from tests.deploy.cleanroot import CleanRoot, available
from tests.provisioning.conftest import build_pi_image, mtools_env

REPO = Path(__file__).resolve().parents[2]
CENTRAL_UNIT = REPO / "deploy" / "systemd" / "pantau-central.service"
CENTRAL_WORKER_UNIT = REPO / "deploy" / "systemd" / "pantau-central@.service"
AGENT_UNIT = REPO / "deploy" / "systemd" / "pantau-agent.service"
# where deploy/install-central.sh and the gateway's first boot put docs/*.md
DOC_DIR = "/opt/pantau/share/doc/pantau/"


def shipped_units() -> list[Path]:
    return sorted(
        {p.resolve() for d in ("deploy", "provisioning") for p in (REPO / d).rglob("*.service")}
    )


def documentation(unit: Path | str) -> list[str]:
    """The unit's Documentation= URIs (several per line, several lines)."""
    text = unit.read_text() if isinstance(unit, Path) else unit
    return [
        uri
        for line in text.splitlines()
        if line.startswith("Documentation=")
        for uri in line.split("=", 1)[1].split()
    ]


def unit_value(unit: Path | str, key: str) -> str:
    text = unit.read_text() if isinstance(unit, Path) else unit
    values = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]
    assert values, f"no {key}= in the unit"
    return values[0]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built as docs/central.md and docs/provisioning.md say, pinned by constraints.txt."""
    why = available()
    if why:
        pytest.skip(f"install tests: {why}")
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "-c", REPO / "constraints.txt"),
            *("--wheel-dir", wheels, f"{REPO}[agent,central,provisioning]"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return wheels


@pytest.fixture
def root(tmp_path: Path) -> Iterator[CleanRoot]:
    r = CleanRoot(tmp_path / "root")
    yield r
    r.remove()


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o7777)


def ids(root: CleanRoot, name: str) -> tuple[int, int]:
    for line in root.path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {name} in the clean root")


def test_install_central_as_documented_twice(root: CleanRoot, wheelhouse: Path) -> None:
    first = root.run("bash", REPO / "deploy/install-central.sh", "--wheelhouse", wheelhouse)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote /etc/pantau/central.yaml" in first.stdout

    # the unit's program is where the install put it, a link into the venv
    start = shlex.split(unit_value(CENTRAL_UNIT, "ExecStart"))
    assert start[0] == "/usr/local/bin/pantau-central"
    assert os.readlink(root.path(start[0])) == "/opt/pantau/bin/pantau-central"
    assert os.readlink(root.path("/usr/local/bin/pantau-provision")) == (
        "/opt/pantau/bin/pantau-provision"
    )
    for unit in (CENTRAL_UNIT, CENTRAL_WORKER_UNIT):
        for uri in documentation(unit):
            assert root.path(uri.removeprefix("file://")).is_file(), f"{unit.name}: {uri}"
    assert root.path("/etc/systemd/system/pantau-central.service").read_text() == (
        CENTRAL_UNIT.read_text()
    )

    # user, directories, config and their modes
    uid, gid = ids(root, unit_value(CENTRAL_UNIT, "User"))
    etc = root.path("/etc/pantau")
    assert (mode(etc), etc.stat().st_uid, etc.stat().st_gid) == ("0o750", 0, gid)
    data = root.path("/var/lib/" + unit_value(CENTRAL_UNIT, "StateDirectory"))
    assert (mode(data), data.stat().st_uid) == ("0o700", uid)
    for name in ("central.yaml", "rules.yaml"):
        f = etc / name
        assert (mode(f), f.stat().st_uid, f.stat().st_gid) == ("0o640", 0, gid)
    assert "data_dir: /var/lib/pantau-central" in (etc / "central.yaml").read_text()

    # the operator's next steps (docs/central.md), then the unit's own commands as its user
    secret = root.run(
        "sh",
        "-c",
        "umask 027 && echo 'central-broker-pw' > /etc/pantau/central-mqtt.secret"
        " && chgrp pantau /etc/pantau/central-mqtt.secret"
        " && echo 'rules_file: /etc/pantau/rules.yaml' >> /etc/pantau/central.yaml",
    )
    assert secret.returncode == 0, secret.stderr
    for key in ("ExecStartPre", "ExecReload"):
        argv = shlex.split(unit_value(CENTRAL_UNIT, key))
        checked = root.run(*argv, user="pantau")
        assert checked.returncode == 0, (key, checked.stdout, checked.stderr)
        assert "rules ok" in checked.stdout
    version = root.run("/usr/local/bin/pantau-central", "--version")
    assert version.stdout.startswith("pantau-central ")
    assert root.run("/usr/local/bin/pantau-provision", "--help").returncode == 0

    # again (an upgrade): the operator's config is kept, nothing is duplicated
    again = root.run("bash", REPO / "deploy/install-central.sh", "--wheelhouse", wheelhouse)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "keeping /etc/pantau/central.yaml" in again.stdout
    assert "rules_file: /etc/pantau/rules.yaml" in (etc / "central.yaml").read_text()
    users = [line.split(":")[0] for line in root.path("/etc/passwd").read_text().splitlines()]
    assert users.count("pantau") == 1


def test_gateway_first_boot_installs_where_the_unit_points(
    root: CleanRoot, wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANTAU_PROVISION_STATE", str(tmp_path / "state"))
    bundles = tmp_path / "bundles"
    add = ["gateway", "add", "gw-install-01", "--site", "ambon"]
    assert provision([*add, "--broker", "mqtt://10.0.0.1:1883", "--out", str(bundles)]) == 0
    # the agent's wheelhouse: the agent's share of the one built above (docs/provisioning.md)
    agent_wheels = tmp_path / "agent-wheels"
    [pantau_wheel] = wheelhouse.glob("pantau-*.whl")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-index"),
            *("--find-links", wheelhouse, "-c", REPO / "constraints.txt"),
            *("--dest", agent_wheels, f"{pantau_wheel}[agent]"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = tmp_path / "pi.img"
    offset = build_pi_image(image)
    seeded = ["seed", str(image), "--bundle", str(bundles / "gw-install-01")]
    assert provision([*seeded, "--wheelhouse", str(agent_wheels)]) == 0
    boot = root.path("/boot/firmware")
    boot.mkdir(parents=True)
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{image}@@{offset}", "::/pantau", str(boot)],
        check=True,
        env=mtools_env(),
        capture_output=True,
    )

    # what docs/provisioning.md tells a technician to run by hand (first boot runs the same)
    installed = root.run("bash", "/boot/firmware/pantau/install.sh")
    log = root.path("/var/log/pantau-firstboot.log").read_text()
    assert installed.returncode == 0, installed.stderr + log

    unit = root.path("/etc/systemd/system/pantau-agent.service").read_text()
    assert unit == AGENT_UNIT.read_text()
    [doc] = documentation(unit)  # systemctl help pantau-agent
    installed_doc = root.path(doc.removeprefix("file://"))
    assert installed_doc.read_text() == (REPO / "docs" / "agent.md").read_text()
    start = shlex.split(unit_value(unit, "ExecStart"))
    assert start[0] == "/usr/local/bin/pantau-agent"
    assert os.readlink(root.path(start[0])) == "/opt/pantau/bin/pantau-agent"
    wants = root.path("/etc/systemd/system/multi-user.target.wants/pantau-agent.service")
    assert os.path.lexists(wants), log  # enabled offline: systemd is not running
    uid, _ = ids(root, unit_value(unit, "User"))
    config = root.path("/etc/pantau/agent.yaml")
    assert (mode(config), config.stat().st_uid) == ("0o600", uid)
    assert not (boot / "pantau" / "mqtt.password").exists()  # secrets off the card
    # the unit's program, as the unit's user: the same check install.sh ran
    checked = root.run(start[0], "check", "--offline", "-c", start[-1], user="pantau")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "config ok: gateway gw-install-01" in checked.stdout
    # the gateway stays light: no server-side package in its venv
    site = root.path("/opt/pantau/lib")
    names = {p.name.split("-")[0].lower() for p in site.glob("python3*/site-packages/*")}
    assert "fastapi" not in names and "pydantic" not in names and "paho_mqtt" in names

    again = root.run("bash", "/boot/firmware/pantau/install.sh")
    assert again.returncode == 0
    assert "already installed" in root.path("/var/log/pantau-firstboot.log").read_text()


def test_no_doc_says_sudo_pip_install() -> None:
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "sudo pip" not in line, f"{path.name}:{number}: {line}"


def test_every_shipped_units_documentation_is_a_doc_the_installers_put_there() -> None:
    """``systemctl help`` must open a real file: each ``Documentation=file://`` of a
    shipped unit names a doc of docs/ in the folder the installers fill (checked for
    real, after installing, by the two tests above)."""
    units = shipped_units()
    assert {u.name for u in units} >= {
        "pantau-agent.service",
        "pantau-central.service",
        "pantau-central@.service",
    }
    for unit in units:
        uris = documentation(unit)
        assert uris, f"{unit}: no Documentation="
        for uri in uris:
            assert uri.startswith(f"file://{DOC_DIR}"), f"{unit.name}: {uri}"
            name = uri.removeprefix(f"file://{DOC_DIR}")
            assert (REPO / "docs" / name).is_file(), f"{unit.name}: {uri}: no docs/{name}"
    installer = (REPO / "deploy" / "install-central.sh").read_text()
    assert 'PREFIX="${PANTAU_PREFIX:-/opt/pantau}"' in installer
    assert 'install -m 0644 "$SRC"/docs/*.md "$PREFIX/share/doc/pantau/"' in installer
