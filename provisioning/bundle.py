"""A gateway's bundle: everything one gateway needs, in one directory ``<out>/<id>/``::

    agent.yaml        the agent's config (mode 600), exactly agent/config.py's format
    mqtt.password     its broker password (mode 600), when it logs in with a password
    client.crt/.key   its client certificate and key (key mode 600), when a CA is set up
    ca.crt            the CA to trust the broker with, when there is one
    gateway.json      id, site, name, location, timezone, broker (no secrets)
    broker/passwd     its line for mosquitto's password file (mode 600)
    broker/acl        its entries for mosquitto's ACL file

Bundles are written into a temporary directory next to their final place and renamed
into place only when every one of them is complete.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml

import wire
from provisioning import ca
from provisioning.acl import gateway_acl
from provisioning.errors import ProvisionError
from provisioning.files import write_file, write_secret
from provisioning.gateways import GatewaySpec
from provisioning.passwords import hash_password, new_password, password_line
from provisioning.state import GatewayRecord, now
from wire.broker import BrokerUrl

Auth = Literal["password", "cert"]
BUFFER_PATH = "/var/lib/pantau/buffer.db"
PASSWORD_FILE = "mqtt.password"
SECRET_FILES = ("agent.yaml", PASSWORD_FILE, "client.key")


def check_broker_url(url: str) -> str:
    try:
        BrokerUrl.parse(url)
    except ValueError as exc:
        raise ProvisionError(f"--broker {url!r}: {exc}") from None
    return url


def agent_config(spec: GatewaySpec, broker_url: str, auth: Auth, has_ca: bool) -> dict[str, Any]:
    gateway: dict[str, Any] = {"id": spec.id, "site": spec.site}
    if spec.name:
        gateway["name"] = spec.name
    mqtt: dict[str, Any] = {"url": broker_url}
    tls: dict[str, str] = {}
    if has_ca:
        tls["ca_file"] = "ca.crt"
    if auth == "password":
        mqtt["username"] = spec.id
        mqtt["password_file"] = PASSWORD_FILE
    else:
        tls["cert_file"] = "client.crt"
        tls["key_file"] = "client.key"
    if tls:
        mqtt["tls"] = tls
    return {"gateway": gateway, "mqtt": mqtt, "buffer": {"path": BUFFER_PATH}, "devices": []}


def write_bundle(
    spec: GatewaySpec,
    target: Path,
    final: Path,
    *,
    broker_url: str,
    auth: Auth,
    ca_dir: Path | None,
) -> GatewayRecord:
    """Write the bundle into ``target`` (which will be renamed to ``final``)."""
    if auth == "cert" and ca_dir is None:
        raise ProvisionError("client certificates need a CA: run `pantau-provision ca init`")
    if auth == "cert" and not broker_url.startswith("mqtts://"):
        raise ProvisionError(
            f"client certificates need a TLS broker URL (mqtts://host:8883), not {broker_url!r}"
        )
    target.mkdir(parents=True)
    os.chmod(target, 0o700)
    password_hash = serial = None
    if ca_dir is not None:
        shutil.copyfile(ca_dir / "ca.crt", target / "ca.crt")
    if auth == "password":
        password = new_password()
        password_hash = hash_password(password)
        write_secret(target / PASSWORD_FILE, password + "\n")
        write_secret(target / "broker" / "passwd", password_line(spec.id, password_hash))
    else:
        assert ca_dir is not None
        issued = ca.issue_client(ca_dir, spec.id)
        write_file(target / "client.crt", issued.cert_pem)
        write_secret(target / "client.key", issued.key_pem)
        serial = issued.serial
    write_file(target / "broker" / "acl", gateway_acl(spec.id))
    config = agent_config(spec, broker_url, auth, ca_dir is not None)
    header = (
        f"# Pantau agent config for gateway {spec.id}, "
        f"written by pantau-provision {wire.__version__}.\n"
        "# Add the field devices under `devices:` (see docs/provisioning.md).\n"
    )
    write_secret(target / "agent.yaml", header + yaml.safe_dump(config, sort_keys=False))
    info = {**spec.central_payload(), "broker_url": broker_url, "auth": auth}
    write_file(target / "gateway.json", json.dumps(info, indent=2) + "\n")
    check_bundle(target)
    return GatewayRecord(
        id=spec.id,
        site=spec.site,
        name=spec.name,
        lat=spec.lat,
        lon=spec.lon,
        timezone=spec.timezone,
        auth=auth,
        password_hash=password_hash,
        cert_serial=serial,
        broker_url=broker_url,
        bundle=str(final.resolve()),
        created=now(),
    )


def check_bundle(bundle: Path) -> Any:
    """Load the bundle's agent.yaml with the agent's own loader; ProvisionError if bad."""
    from agent.config import load_config
    from wire.configfile import ConfigError

    try:
        return load_config(bundle / "agent.yaml")
    except ConfigError as exc:
        raise ProvisionError(
            f"the bundle in {bundle} is not a valid agent config:\n{exc}"
        ) from None


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary directory inside ``out``; removed afterwards whatever happens."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".pantau-staging-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_into(staged: Path, final: Path) -> None:
    """Move ``staged`` to ``final``, replacing an older directory of the same name."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(final)
