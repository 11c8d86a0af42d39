"""``/api/v1/gateways``: the gateways central knows, provisioned or heard on the broker."""

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from central.api.deps import AdminToken, CentralDep, ReadToken
from central.api.schemas import (
    DevicePublic,
    GatewayCreate,
    GatewayHealthPublic,
    GatewayPublic,
    GatewayUpdate,
)
from central.registry import Conflict, NotFound

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


@router.get("", response_model=list[GatewayPublic])
def list_gateways(
    central: CentralDep, _: ReadToken, site: str | None = None, status: str | None = None
) -> list[GatewayPublic]:
    rows = central.registry.gateways()
    return [
        GatewayPublic.of(r)
        for r in rows
        if (site is None or r["site"] == site) and (status is None or r["status"] == status)
    ]


@router.post("", response_model=GatewayPublic, status_code=status.HTTP_201_CREATED)
def create_gateway(body: GatewayCreate, central: CentralDep, _: AdminToken) -> GatewayPublic:
    """Register a provisioned gateway; it shows as ``never-seen`` until it speaks.
    A site not yet known is added with ``timezone``. 409 when the id exists."""
    try:
        row = central.registry.create_gateway(
            body.id,
            site=body.site,
            name=body.name,
            lat=body.location.lat if body.location else None,
            lon=body.location.lon if body.location else None,
            timezone=body.timezone,
        )
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return GatewayPublic.of(row)


def _found(central: Any, gateway_id: str) -> dict[str, Any]:
    row: dict[str, Any] | None = central.registry.gateway(gateway_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway {gateway_id!r}")
    return row


@router.get("/{gateway_id}", response_model=GatewayPublic)
def get_gateway(gateway_id: str, central: CentralDep, _: ReadToken) -> GatewayPublic:
    return GatewayPublic.of(_found(central, gateway_id))


@router.patch("/{gateway_id}", response_model=GatewayPublic)
def update_gateway(
    gateway_id: str, body: GatewayUpdate, central: CentralDep, _: AdminToken
) -> GatewayPublic:
    changes = body.model_dump(exclude_unset=True)
    if "location" in changes:
        location = changes.pop("location")
        changes["lat"] = location["lat"] if location else None
        changes["lon"] = location["lon"] if location else None
    try:
        row = central.registry.update_gateway(gateway_id, changes)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return GatewayPublic.of(row)


@router.delete("/{gateway_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_gateway(gateway_id: str, central: CentralDep, _: AdminToken) -> Response:
    """Forget the gateway and its devices (its readings stay in InfluxDB)."""
    try:
        central.registry.delete_gateway(gateway_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{gateway_id}/devices", response_model=list[DevicePublic])
def list_devices(gateway_id: str, central: CentralDep, _: ReadToken) -> list[DevicePublic]:
    """The devices the gateway announced in its last birth message."""
    _found(central, gateway_id)
    return [DevicePublic.of(r) for r in central.registry.devices(gateway_id)]


@router.get("/{gateway_id}/health", response_model=GatewayHealthPublic)
def get_health(gateway_id: str, central: CentralDep, _: ReadToken) -> GatewayHealthPublic:
    """The gateway's latest health message; 404 until one arrived."""
    _found(central, gateway_id)
    health = central.registry.latest_health(gateway_id)
    if health is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no health from {gateway_id!r} yet")
    return GatewayHealthPublic.of(health)
