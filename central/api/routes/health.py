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
    pending backlog is under ``influx.max_pending``; 503 otherwise."""
    ingest = central.ingest
    ready = central.ready
    body = {
        "ready": ready,
        "broker": ingest.connected.is_set(),
        "influx": ingest.influx_up,
        "overloaded": ingest.overloaded,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(central: CentralDep, _: ReadToken) -> Response:
    """Prometheus text format. Needs a read token like the rest of the API."""
    return Response(central.metrics.render(), media_type=CONTENT_TYPE)
