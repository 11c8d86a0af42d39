"""``/api/v1/alerts``: the alerts firing now (acknowledged and silenced ones included,
marked as such). ``AlertsDep`` gives the other alert routes the running AlertService."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from central.alerts.schemas import IncidentPublic
from central.alerts.service import AlertService
from central.api.deps import CentralDep, ReadToken


def get_alerts(central: CentralDep) -> AlertService:
    service: AlertService | None = getattr(central, "alerts", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "alerts are not running")
    return service


AlertsDep = Annotated[AlertService, Depends(get_alerts)]

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


@router.get("", response_model=list[IncidentPublic])
def active_alerts(alerts: AlertsDep, _: ReadToken) -> list[IncidentPublic]:
    now = alerts.now()
    return [IncidentPublic.of(r, alerts.state_of(r, now)) for r in alerts.incidents.firing()]
