"""``/api/v1/silences``: mute notifications of alerts whose labels match, until a time.
Incidents still open and resolve while silenced."""

from fastapi import APIRouter, HTTPException, status

from central.alerts.schemas import SilenceCreate, SilencePublic
from central.api.deps import AdminToken, ReadToken
from central.api.routes.alerts import AlertsDep

router = APIRouter(prefix="/api/v1/silences", tags=["alerts"])


@router.get("", response_model=list[SilencePublic])
def list_silences(
    alerts: AlertsDep, _: ReadToken, include_expired: bool = False
) -> list[SilencePublic]:
    now = alerts.now()
    rows = alerts.silences.search(now, include_expired=include_expired)
    return [SilencePublic.of(r, now) for r in rows]


@router.post("", response_model=SilencePublic, status_code=status.HTTP_201_CREATED)
def create_silence(body: SilenceCreate, alerts: AlertsDep, token: AdminToken) -> SilencePublic:
    now = alerts.now()
    starts = body.starts_at.timestamp() if body.starts_at else now
    ends = body.until.timestamp() if body.until else starts + (body.duration or 0.0)
    if ends <= max(starts, now):
        raise HTTPException(422, "the silence ends in the past")
    row = alerts.silences.create(
        matchers=dict(body.matchers),
        starts_at=starts,
        ends_at=ends,
        comment=body.comment,
        created_by=token.name or f"token {token.id}",
        now=now,
    )
    return SilencePublic.of(row, now)


@router.delete("/{silence_id}", response_model=SilencePublic)
def expire_silence(silence_id: int, alerts: AlertsDep, _: AdminToken) -> SilencePublic:
    """Ends a silence now (it stays listed with ``include_expired``)."""
    now = alerts.now()
    row = alerts.silences.expire(silence_id, now)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id}")
    return SilencePublic.of(row, now)
