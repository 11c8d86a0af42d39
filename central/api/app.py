"""``create_app(settings, central)``: the FastAPI application (OpenAPI at ``/docs``, for
signed-in people only: ``central.api.routes.docs``).

Every route needs ``Authorization: Bearer <token>`` except ``/healthz`` and
``/readyz`` (see ``central.api.deps``). The dashboard's pages (``central.dashboard``)
are served from the same app at ``/`` with a session cookie instead.
"""

from fastapi import FastAPI

import wire
from central.api.routes import (
    alerts,
    credentials,
    dead_letters,
    docs,
    gateway_config,
    gateway_page,
    gateways,
    health,
    incidents,
    readings,
    rules,
    silences,
    sites,
    webhooks,
)
from central.config import CentralConfig
from central.dashboard import mount as mount_dashboard
from central.service import Central


def create_app(settings: CentralConfig, central: Central) -> FastAPI:
    app = FastAPI(
        title="Pantau central",
        version=wire.__version__,
        description="Registry, readings, alerts and dead letters of a Pantau deployment.",
        # served by central.api.routes.docs: signed-in only, assets local
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.central = central

    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(gateways.router)
    app.include_router(gateway_config.router)
    app.include_router(credentials.router)
    app.include_router(readings.router)
    app.include_router(dead_letters.router)
    for router in (alerts.router, incidents.router, silences.router, webhooks.router):
        app.include_router(router)
    app.include_router(rules.router)
    if settings.api.docs:
        docs.mount(app)
    mount_dashboard(app, settings, central)  # pages at /, assets at /static
    gateway_page.add_fallback(app)  # last: only where no dashboard route serves the page
    return app
