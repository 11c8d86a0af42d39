"""Provisioning one gateway or many: bundles staged, registered, then renamed into place."""

from pathlib import Path

from provisioning.bundle import Auth, replace_into, staging, write_bundle
from provisioning.central import Central
from provisioning.errors import InputError
from provisioning.gateways import GatewaySpec
from provisioning.state import GatewayRecord, ProvisionState


def add_gateways(
    state: ProvisionState,
    specs: list[GatewaySpec],
    out: Path,
    broker_url: str,
    *,
    auth: Auth | None = None,
    central: Central | None = None,
    force: bool = False,
) -> tuple[list[GatewayRecord], list[str]]:
    """Write ``<out>/<id>/`` for each spec and remember them; returns records and notes.

    Nothing is written (no bundle, no state) unless every gateway succeeds."""
    mode: Auth = auth or ("cert" if state.has_ca else "password")
    if not force:
        problems = []
        for spec in specs:
            if state.has_gateway(spec.id):
                problems.append(
                    f"gateway {spec.id} was provisioned before; --force makes new credentials "
                    "(the old ones stop working once the broker config is updated)"
                )
            elif (out / spec.id).exists():
                problems.append(f"{out / spec.id} already exists; --force replaces it")
        if problems:
            raise InputError(problems)
    ca_dir = state.ca_dir if state.has_ca else None
    records: list[GatewayRecord] = []
    notes: list[str] = []
    with staging(out) as tmp:
        for spec in specs:
            records.append(
                write_bundle(
                    spec,
                    tmp / spec.id,
                    out / spec.id,
                    broker_url=broker_url,
                    auth=mode,
                    ca_dir=ca_dir,
                )
            )
        if central is not None:
            for spec in specs:
                outcome = central.register(spec)
                if outcome == "exists":
                    notes.append(f"{spec.id}: already registered in central (left as it is)")
                else:
                    notes.append(f"{spec.id}: registered in central")
        for record in records:
            replace_into(tmp / record.id, out / record.id)
    state.ensure()
    for i, record in enumerate(records):
        if state.has_gateway(record.id):  # --force: the old certificates stay revoked
            old = state.gateway(record.id)
            replaced = [old.cert_serial] if old.cert_serial else []
            records[i] = record.model_copy(
                update={"revoked_serials": [*old.revoked_serials, *replaced]}
            )
        state.save_gateway(records[i])
    state.remember(broker_url=broker_url, central_url=central.url if central else None)
    return records, notes
