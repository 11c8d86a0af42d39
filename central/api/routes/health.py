"""``/healthz`` and ``/readyz`` (open: load balancers, systemd), ``/metrics`` (read token)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from central.api.deps import CentralDep, ReadToken
from central.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(central: CentralDep) -> JSONResponse:
    """200 when connected to the broker, InfluxDB answers and takes writes and the
    pending backlog is under ``influx.max_pending``; 503 otherwise, with ``holding``
    saying why writes are held (``401``, ``429``, ``unreachable``...)."""
    ingest = central.ingest
    ready = central.ready
    body: dict[str, object] = {
        "ready": ready,
        "broker": ingest.connected.is_set(),
        "influx": ingest.influx_up,
        "overloaded": ingest.overloaded,
    }
    if ingest.hold_reason is not None:
        # why InfluxDB writes are held (messages wait, unacknowledged, at the broker)
        body["holding"] = {"reason": ingest.hold_reason, "detail": ingest.hold_detail}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(central: CentralDep, _: ReadToken) -> Response:
    """Prometheus text format. Needs a read token like the rest of the API."""
    return Response(central.metrics.render(), media_type=CONTENT_TYPE)
