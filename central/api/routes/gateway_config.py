"""``POST /api/v1/gateways/<id>/config``: push a new device list (and the profiles it
needs) to a running gateway over the command channel (``apply-config``).

The answer is the agent's: 200 with the devices now running, 422 with the agent's
reason when it refused the list (its old devices keep polling), 504 when it did not
answer in time (offline?), 503 when central is not connected to the broker.
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from central.api.deps import AdminToken, CentralDep
from central.commands import CommandFailed

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


class ConfigPush(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: list[dict[str, Any]] = Field(
        description="device entries exactly as under `devices:` in agent.yaml"
    )
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="profiles the gateway does not ship: name (e.g. site/radar-x) → content",
    )
    timeout: Annotated[float, Field(gt=0, le=300)] = Field(
        default=30.0, description="seconds to wait for the gateway's answer"
    )


class ConfigPushResult(BaseModel):
    gateway: str
    command_id: str
    devices: list[str]
    profiles: list[str]
    rollback_after: float


@router.post("/{gateway_id}/config", response_model=ConfigPushResult)
def push_config(
    gateway_id: str, body: ConfigPush, central: CentralDep, _: AdminToken
) -> ConfigPushResult:
    """Send `apply-config`; the gateway validates everything before it switches, and
    rolls back by itself if the broker confirms nothing afterwards."""
    if central.registry.gateway(gateway_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway {gateway_id!r}")
    args = {"devices": body.devices, "profiles": body.profiles}
    try:
        reply = central.commands.send(gateway_id, "apply-config", args, body.timeout)
    except CommandFailed as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if not reply.ok:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, reply.error or "refused")
    result = reply.result if isinstance(reply.result, dict) else {}
    return ConfigPushResult(
        gateway=gateway_id,
        command_id=reply.id,
        devices=[str(d) for d in result.get("devices", [])],
        profiles=[str(p) for p in result.get("profiles", [])],
        rollback_after=float(result.get("rollback_after", 0.0)),
    )
