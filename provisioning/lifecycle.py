"""A provisioned gateway's credentials over its life.

- :func:`revoke`: the gateway may never log in again. Its record is flagged; the next
  ``broker-config`` leaves it out of ``passwd`` and ``acl`` and, with a CA, puts its
  certificate in ``crl.pem``, which the generated ``mosquitto.conf`` reads (``crlfile``).
- :func:`rotate`: a new password or certificate and a new bundle for the technician; the
  old password stops working with the next ``broker-config``, the old certificate goes
  into the CRL. The gateway's ``agent.yaml`` in its bundle (its devices) is kept.

Both change the provisioning state only: the broker learns of them when the files that
``broker-config`` writes are installed on it and mosquitto is restarted.
"""

import shutil
from pathlib import Path

from provisioning.bundle import check_bundle, replace_into, staging, write_bundle
from provisioning.errors import ProvisionError
from provisioning.state import GatewayRecord, ProvisionState, now


def revoke(state: ProvisionState, gateway_id: str, at: float | None = None) -> GatewayRecord:
    """Flag the gateway revoked (again: no change); returns its record."""
    record = state.gateway(gateway_id)
    if record.revoked is not None:
        return record
    record = record.model_copy(update={"revoked": now() if at is None else at})
    state.save_gateway(record)
    return record


def rotate(state: ProvisionState, gateway_id: str, out: Path | None = None) -> GatewayRecord:
    """New credentials in a new bundle ``<out>/<id>/`` (default: where the last one went)."""
    record = state.gateway(gateway_id)
    if record.revoked is not None:
        raise ProvisionError(
            f"{gateway_id} is revoked; `pantau-provision gateway add {gateway_id} --force` "
            "gives it a new identity"
        )
    old_bundle = Path(record.bundle)
    out = out if out is not None else old_bundle.parent
    ca_dir = state.ca_dir if state.has_ca else None
    with staging(out) as tmp:
        fresh = write_bundle(
            record.spec,
            tmp / gateway_id,
            out / gateway_id,
            broker_url=record.broker_url,
            auth=record.auth,
            ca_dir=ca_dir,
        )
        kept = old_bundle / "agent.yaml"
        if kept.is_file():  # the technician's devices; credentials live in other files
            shutil.copyfile(kept, tmp / gateway_id / "agent.yaml")
            check_bundle(tmp / gateway_id)
        replace_into(tmp / gateway_id, out / gateway_id)
    replaced = [record.cert_serial] if record.cert_serial else []
    record = fresh.model_copy(
        update={
            "created": record.created,
            "rotated": now(),
            "revoked_serials": [*record.revoked_serials, *replaced],
        }
    )
    state.save_gateway(record)
    return record
