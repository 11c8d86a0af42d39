"""``/api/v1/webhooks``: the configured webhooks (never their secrets) and the
delivery log of the outbox: pending, delivered, failed (with the answer), expired."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from central.alerts.schemas import DeliveryPublic
from central.api.deps import ReadToken
from central.api.routes.alerts import AlertsDep

router = APIRouter(prefix="/api/v1/webhooks", tags=["alerts"])


@router.get("")
def list_webhooks(alerts: AlertsDep, _: ReadToken) -> list[dict[str, Any]]:
    return [
        {"name": h.name, "url": h.url, "match": h.match, "timeout": h.timeout}
        for h in alerts.outbox.hooks.values()
    ]


@router.get("/deliveries", response_model=list[DeliveryPublic])
def list_deliveries(
    alerts: AlertsDep,
    _: ReadToken,
    state: Literal["pending", "delivered", "failed", "expired", "superseded"] | None = None,
    webhook: str | None = None,
    incident: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryPublic]:
    rows = alerts.outbox.search(state=state, webhook=webhook, incident=incident, limit=limit)
    return [DeliveryPublic.of(r) for r in rows]
