"""``/api/v1/dead-letters``: messages central refused, with the reason and the raw payload."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from central.api.deps import AdminToken, CentralDep, ReadToken
from central.api.schemas import DeadLetterPublic

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])


@router.get("", response_model=list[DeadLetterPublic])
def list_dead_letters(
    central: CentralDep,
    _: ReadToken,
    reason: str | None = None,
    gateway: str | None = None,
    before: Annotated[int | None, Query(description="only ids below this (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterPublic]:
    """Newest first. Reasons: bad_json, schema, too_large, gateway_mismatch, bad_topic,
    influx_rejected, internal."""
    rows = central.registry.dead_letters(limit, reason=reason, gateway=gateway, before=before)
    return [DeadLetterPublic.of(r) for r in rows]


@router.post("/replay")
def replay_dead_letters(
    central: CentralDep,
    _: AdminToken,
    reason: Annotated[str | None, Query(description="only letters with this reason")] = None,
    gateway: Annotated[str | None, Query(description="only letters from this gateway")] = None,
) -> dict[str, Any]:
    """After a fix (a raised limit, a corrected profile, data cleaned up in InfluxDB):
    store the dead letters again, oldest first. Those stored are deleted; those refused
    again stay with the new reason. ``held`` says why the replay stopped early when
    InfluxDB can't take writes (run it again later)."""
    from central.replay import Replayer

    result = Replayer(central.config, central.registry, central.writer).replay(reason, gateway)
    central.metrics.dead_letters_replayed(result.stored, result.refused)
    return result.as_dict()


@router.get("/{letter_id}", response_model=DeadLetterPublic)
def get_dead_letter(letter_id: int, central: CentralDep, _: ReadToken) -> DeadLetterPublic:
    row = central.registry.get_dead_letter(letter_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id}")
    return DeadLetterPublic.of(row)
