"""``/api/v1/readings/latest`` and ``/api/v1/series``: read back from InfluxDB.

Latest values come from InfluxDB itself (``LAST``), not from a cache in this
process: with ``mqtt.shared_group`` several central workers each see only part
of the traffic, and a restart would empty a cache; InfluxDB has it all.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from central.api.deps import CentralDep, ReadToken
from central.api.schemas import BucketPublic, LatestPublic, SeriesPublic
from central.queries import QueryError, QueryUnsupported
from wire.durations import parse_duration

router = APIRouter(prefix="/api/v1", tags=["readings"])

MAX_BUCKETS = 10_000
NameParam = Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]


def _query_failed(exc: QueryError) -> HTTPException:
    if isinstance(exc, QueryUnsupported):
        return HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(exc))
    return HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _ms(value: datetime) -> int:
    return int(_utc(value).timestamp() * 1000)


@router.get("/readings/latest", response_model=list[LatestPublic])
def latest(
    central: CentralDep,
    _: ReadToken,
    gateway: NameParam,
    device: NameParam | None = None,
) -> list[LatestPublic]:
    """The last stored value of each metric of a gateway (or one of its devices):
    numbers, and text readings (firmware versions, status words) as strings."""
    try:
        rows = central.queries.latest(gateway, device, text=True)
    except QueryError as exc:
        raise _query_failed(exc) from None
    return [
        LatestPublic(
            device=r.device,
            metric=r.metric,
            value=r.value,
            ts=r.ts,
            time=datetime.fromtimestamp(r.ts / 1000, UTC),
        )
        for r in rows
    ]


@router.get("/series", response_model=SeriesPublic)
def series(  # noqa: PLR0917 - FastAPI query parameters
    central: CentralDep,
    _: ReadToken,
    gateway: NameParam,
    device: NameParam,
    metric: NameParam,
    start: Annotated[
        datetime | None, Query(description="ISO 8601 or Unix seconds; default end - 1 h")
    ] = None,
    end: Annotated[
        datetime | None, Query(description="ISO 8601 or Unix seconds; default now")
    ] = None,
    every: Annotated[str, Query(description="bucket size: 10s, 1m, 5m, 1h, ...")] = "1m",
) -> SeriesPublic:
    """Mean, min, max and count of one metric per ``every`` bucket, computed by InfluxDB."""
    end_at = _utc(end) if end else datetime.now(UTC)
    start_at = _utc(start) if start else end_at - timedelta(hours=1)
    try:
        every_s = parse_duration(every)
    except ValueError as exc:
        raise HTTPException(422, f"every: {exc}") from None
    if every_s < 0.001:
        raise HTTPException(422, "every: at least 1ms")
    if start_at >= end_at:
        raise HTTPException(422, "start must be before end")
    span = (end_at - start_at).total_seconds()
    if span / every_s > MAX_BUCKETS:
        raise HTTPException(
            422,
            f"{span / every_s:.0f} buckets asked for; at most {MAX_BUCKETS}: widen 'every'",
        )
    try:
        buckets = central.queries.series(
            gateway,
            device,
            metric,
            start_ms=_ms(start_at),
            end_ms=_ms(end_at),
            every_ms=round(every_s * 1000),
        )
    except QueryError as exc:
        raise _query_failed(exc) from None
    return SeriesPublic(
        gateway=gateway,
        device=device,
        metric=metric,
        start=start_at,
        end=end_at,
        every=every,
        points=[
            BucketPublic(
                time=datetime.fromtimestamp(b.ts / 1000, UTC),
                ts=b.ts,
                mean=b.mean,
                min=b.min,
                max=b.max,
                count=b.count,
            )
            for b in buckets
        ],
    )
