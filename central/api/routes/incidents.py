"""``/api/v1/incidents``: incident history (filters), one incident with its events,
and acknowledging one (admin: no more repeat notifications)."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status

from central.alerts.schemas import AckCreate, IncidentPublic
from central.api.deps import AdminToken, ReadToken
from central.api.routes.alerts import AlertsDep

router = APIRouter(prefix="/api/v1/incidents", tags=["alerts"])


@router.get("", response_model=list[IncidentPublic])
def list_incidents(  # noqa: PLR0917 - FastAPI query parameters
    alerts: AlertsDep,
    _: ReadToken,
    state: Literal["firing", "resolved"] | None = None,
    rule: str | None = None,
    gateway: str | None = None,
    device: str | None = None,
    since: Annotated[datetime | None, Query(description="active at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="started at or before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentPublic]:
    now = alerts.now()
    rows = alerts.incidents.search(
        status=state,
        rule=rule,
        gateway=gateway,
        device=device,
        since=since.timestamp() if since else None,
        until=until.timestamp() if until else None,
        limit=limit,
    )
    return [IncidentPublic.of(r, alerts.state_of(r, now)) for r in rows]


@router.get("/{incident_id}", response_model=IncidentPublic)
def get_incident(incident_id: int, alerts: AlertsDep, _: ReadToken) -> IncidentPublic:
    row = alerts.incidents.get(incident_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return IncidentPublic.of(row, alerts.state_of(row), alerts.incidents.events(incident_id))


@router.post("/{incident_id}/ack", response_model=IncidentPublic)
def ack_incident(
    incident_id: int, alerts: AlertsDep, token: AdminToken, body: AckCreate | None = None
) -> IncidentPublic:
    comment = body.comment if body else ""
    row = alerts.incidents.ack(
        incident_id, token.name or f"token {token.id}", comment, alerts.now()
    )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return IncidentPublic.of(row, alerts.state_of(row))
