"""``create_app(settings, central)``: the FastAPI application."""

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

import wire
from central.config import CentralConfig
from central.service import Central


def create_app(settings: CentralConfig, central: Central) -> FastAPI:
    app = FastAPI(
        title="Pantau central",
        version=wire.__version__,
        description="Registry, readings, alerts and dead letters of a Pantau deployment.",
    )
    app.state.settings = settings
    app.state.central = central

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Connected to the broker and InfluxDB accepts writes."""
        ingest = central.ingest
        body = {
            "ready": central.ready,
            "broker": ingest.connected.is_set(),
            "influx": not ingest._influx_error_logged,
        }
        return JSONResponse(body, status_code=200 if central.ready else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> str:
        """Prometheus metrics."""
        return central.metrics.render()

    return app
