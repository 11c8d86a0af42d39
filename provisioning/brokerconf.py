"""The broker's side: ``passwd``, ``acl`` and a ``mosquitto.conf`` snippet for every
gateway provisioned so far and not revoked, plus central's own identity; with a CA, the
CA certificate and ``crl.pem``, the revoked client certificates."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from provisioning.acl import DEFAULT_CENTRAL_USER, acl_file
from provisioning.errors import ProvisionError
from provisioning.files import write_file, write_secret
from provisioning.passwords import hash_password, new_password, password_line
from provisioning.state import CentralRecord, GatewayRecord, ProvisionState

CONF_DIR = "/etc/mosquitto/pantau"
PERSISTENCE_DIR = "/var/lib/mosquitto/"
AUTOSAVE_CHANGES = 1000
"""mosquitto saves its persistence file after this many changes (``autosave_on_changes``);
docs/provisioning.md has what a crash loses, measured with bench/broker_crash_window.py."""


@dataclass
class BrokerOptions:
    conf_dir: str = CONF_DIR  # where passwd/acl/certs will live on the broker machine
    port: int = 1883
    bind: str | None = None  # None: every interface
    tls_port: int = 8883
    persistence_dir: str = PERSISTENCE_DIR
    central_user: str = DEFAULT_CENTRAL_USER
    rotate_central: bool = False
    central_workers: int = 1  # central run --workers N: users <central_user>-1 ... -<N-1> too
    autosave_changes: int = AUTOSAVE_CHANGES


def mosquitto_conf(opts: BrokerOptions, tls: bool) -> str:
    bind = f" {opts.bind}" if opts.bind else ""
    text = f"""\
# Pantau broker settings, written by pantau-provision.
# Put this file in /etc/mosquitto/conf.d/ and the passwd and acl files in
# {opts.conf_dir}/ (owned by the mosquitto user, mode 600), then restart mosquitto.

# password_file and acl_file below apply to every listener.
per_listener_settings false

# Gateways and central log in with a username and password.
listener {opts.port}{bind}
# The broker replaces the client id a client sends with its username: no one can
# take over another's session (e.g. connect with central's client id and wipe or
# steal its queue), whatever client id they send.
use_username_as_clientid true
allow_anonymous false
password_file {opts.conf_dir}/passwd
acl_file {opts.conf_dir}/acl
"""
    if tls:
        text += f"""
# Gateways with a client certificate: the certificate's common name (the gateway id)
# becomes the username the ACL is checked against. The server certificate comes from
# `pantau-provision ca server-cert HOST --out DIR`.
listener {opts.tls_port}{bind}
cafile {opts.conf_dir}/ca.crt
certfile {opts.conf_dir}/server.crt
keyfile {opts.conf_dir}/server.key
require_certificate true
use_identity_as_username true
use_username_as_clientid true
# Client certificates revoked with `pantau-provision gateway revoke` or replaced by
# `gateway rotate` are refused during the TLS handshake.
crlfile {opts.conf_dir}/crl.pem
"""
    text += f"""
# Keep sessions and queued QoS 1 messages across a broker restart: central's
# persistent session must not lose what arrived while it was down. A crash
# (kill -9, power cut) loses what changed since the last save: saving after every
# {opts.autosave_changes} changes instead of every 60 s took that from everything
# queued to 2 messages in bench/broker_crash_window (docs/provisioning.md).
persistence true
persistence_location {opts.persistence_dir}
autosave_on_changes true
autosave_interval {opts.autosave_changes}

# Queue limits Pantau needs. Stock mosquitto keeps only 1000 queued QoS 1 messages
# per client and silently drops the rest: while central (or InfluxDB behind it) is
# down, gateways keep publishing and central's session must hold hours of readings.
max_queued_messages 1000000
# No byte limit on the queue (the message count above bounds it).
max_queued_bytes 0
# Stock mosquitto sends only 20 unacknowledged messages at a time to a client;
# central acknowledges after writing to InfluxDB, so allow a deeper pipeline.
max_inflight_messages 10000
# Pantau payloads are at most 256 KiB; refuse anything far larger.
max_packet_size 1048576
"""
    return text


def revoked_serials(record: GatewayRecord) -> list[str]:
    """The gateway's certificates the broker must refuse: replaced ones, and its current
    one once it is revoked."""
    current = [record.cert_serial] if record.revoked is not None and record.cert_serial else []
    return [*record.revoked_serials, *current]


def central_identity(
    state: ProvisionState, opts: BrokerOptions
) -> tuple[CentralRecord, str | None]:
    """Central's record, and its new password when one was just made (else None)."""
    record = state.central()
    if record is not None and record.username == opts.central_user and not opts.rotate_central:
        if record.workers != opts.central_workers:
            record = record.model_copy(update={"workers": opts.central_workers})
            state.save_central(record)
        return record, None
    password = new_password()
    record = CentralRecord(
        username=opts.central_user,
        password_hash=hash_password(password),
        workers=opts.central_workers,
    )
    state.save_central(record)
    return record, password


def write_access(state: ProvisionState, out: Path, central: CentralRecord) -> list[str]:
    """Who may log in and publish what: ``passwd``, ``acl`` and, with a CA, ``crl.pem``
    (and ``ca.crt``) in ``out``; revoked gateways are left out. Returns notes."""
    everyone = state.gateways()
    users = central.users()
    clash = sorted(set(users) & {g.id for g in everyone})
    if clash:
        raise ProvisionError(f"central's username {clash[0]!r} is also a gateway id")
    gateways = [g for g in everyone if g.revoked is None]
    revoked = [g.id for g in everyone if g.revoked is not None]
    lines = [password_line(user, central.password_hash) for user in users]
    lines += [
        password_line(g.id, g.password_hash)
        for g in gateways
        if g.auth == "password" and g.password_hash
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_secret(out / "passwd", "".join(lines))
    write_file(out / "acl", acl_file([g.id for g in gateways], *users))
    if state.has_ca:
        from provisioning import ca  # cryptography: only with a CA

        shutil.copyfile(state.ca_dir / "ca.crt", out / "ca.crt")
        serials = [serial for g in everyone for serial in revoked_serials(g)]
        write_file(out / "crl.pem", ca.crl(state.ca_dir, serials))
    notes = [
        f"{len(gateways)} gateway(s) + {', '.join(users)}: wrote passwd, acl"
        f"{', crl.pem' if state.has_ca else ''} to {out}"
    ]
    if revoked:
        notes.append(f"left out (revoked): {', '.join(revoked)}")
    return notes


def write_broker_config(state: ProvisionState, out: Path, opts: BrokerOptions) -> list[str]:
    """Write passwd, acl, mosquitto.conf (and ca.crt, crl.pem) into ``out``; returns notes
    to print. Revoked gateways are left out."""
    central, password = central_identity(state, opts)
    notes = write_access(state, out, central)
    write_file(out / "mosquitto.conf", mosquitto_conf(opts, state.has_ca))
    notes[0] = notes[0].replace(f" to {out}", f" and mosquitto.conf to {out}")
    if password is not None:
        write_secret(out / "central.password", password + "\n")
        notes.append(
            f"new password for {central.username!r} in {out / 'central.password'} (mode 600): "
            "give it to central's config, then delete it here"
        )
    return notes
