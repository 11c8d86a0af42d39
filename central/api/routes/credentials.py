"""``POST /api/v1/gateways/<id>/revoke`` and ``/rotate``: a gateway's broker credentials,
when central shares pantau-provision's state directory (``provisioning.state``).

Both do what ``pantau-provision gateway revoke|rotate`` does, then (with
``provisioning.broker_files``) rewrite the broker's ``passwd``, ``acl`` and ``crl.pem``
there; mosquitto takes them on its next reload. ``rotate`` answers with the new bundle
as a ``.tar.gz`` for the technician (it holds the new secret: keep it safe).
"""

import datetime as dt
import io
import tarfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel

from central.api.deps import AdminToken, CentralDep

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


class Revoked(BaseModel):
    id: str
    revoked: str
    broker_files: str | None
    next: str


def _provisioning(central: Any) -> Any:
    section = central.config.provisioning
    if section is None:
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED,
            "central does not share pantau-provision's state: set provisioning.state in "
            "central.yaml, or use `pantau-provision gateway revoke|rotate`",
        )
    try:
        from provisioning.errors import ProvisionError
        from provisioning.state import ProvisionState
    except ImportError as exc:  # pragma: no cover - an install without the extra
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED,
            f"install pantau[provisioning] next to central ({exc.name} is missing)",
        ) from None
    return section, ProvisionState(section.state), ProvisionError


def _broker_files(section: Any, state: Any) -> tuple[str | None, str]:
    """Rewrite the broker's access files when central is told where they are."""
    from provisioning.brokerconf import write_access

    if section.broker_files is None:
        return None, (
            "run `pantau-provision broker-config`, install it on the broker, reload mosquitto"
        )
    central = state.central()
    if central is None:
        return None, "run `pantau-provision broker-config` once: central has no broker identity"
    write_access(state, section.broker_files, central)
    return str(section.broker_files), "reload mosquitto (systemctl reload mosquitto)"


@router.post("/{gateway_id}/revoke", response_model=Revoked)
def revoke_gateway(gateway_id: str, central: CentralDep, _: AdminToken) -> Revoked:
    """The gateway may never log in again (after the broker reloads its files)."""
    section, state, provision_error = _provisioning(central)
    from provisioning.lifecycle import revoke

    _known(state, gateway_id)
    try:
        record = revoke(state, gateway_id)
        files, next_step = _broker_files(section, state)
    except provision_error as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    assert record.revoked is not None
    when = dt.datetime.fromtimestamp(record.revoked, dt.UTC).isoformat().replace("+00:00", "Z")
    return Revoked(id=record.id, revoked=when, broker_files=files, next=next_step)


@router.post(
    "/{gateway_id}/rotate",
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}, "description": "the new bundle"}},
)
def rotate_gateway(gateway_id: str, central: CentralDep, _: AdminToken) -> Response:
    """New password or certificate; the answer is the new bundle (``<id>/...``)."""
    section, state, provision_error = _provisioning(central)
    from provisioning.lifecycle import rotate

    bundles = section.bundles or central.config.data_dir / "bundles"
    if _known(state, gateway_id).revoked is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{gateway_id} is revoked; `pantau-provision gateway add {gateway_id} --force` "
            "gives it a new identity",
        )
    try:
        record = rotate(state, gateway_id, bundles)
        files, next_step = _broker_files(section, state)
    except provision_error as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    return Response(
        _tar(Path(record.bundle)),
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="{gateway_id}-bundle.tar.gz"',
            "X-Pantau-Broker-Files": files or "",
            "X-Pantau-Next": next_step,
        },
    )


def _known(state: Any, gateway_id: str) -> Any:
    if not state.has_gateway(gateway_id):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no gateway {gateway_id!r} in the provisioning state"
        )
    return state.gateway(gateway_id)


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buffer.getvalue()
