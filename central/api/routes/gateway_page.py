"""``/gateways/<id>``: the gateway's page, where its QR label points.

The dashboard serves that page on the API listener. Where no dashboard route serves it,
:func:`add_fallback` makes central answer with a redirect to the gateway in the JSON API
(``/api/v1/gateways/<id>``, bearer token needed), so a label's URL never leads to a 404.
"""

import re

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from wire import gateway_id_ok

PATH = "/gateways/{gateway_id}"
_PARAM = re.compile(r"\{[^}]*\}")


def served(app: FastAPI) -> bool:
    """True when a route (the dashboard's) already serves ``/gateways/<id>``."""
    shape = _PARAM.sub("{}", PATH)
    return any(_PARAM.sub("{}", getattr(r, "path", "")) == shape for r in app.routes)


def add_fallback(app: FastAPI) -> None:
    """Add the redirect, unless the dashboard serves the page already."""
    if served(app):
        return

    def gateway_page(gateway_id: str) -> RedirectResponse:
        target = (
            f"/api/v1/gateways/{gateway_id}" if gateway_id_ok(gateway_id) else "/api/v1/gateways"
        )
        return RedirectResponse(target, status_code=307)

    app.add_api_route(PATH, gateway_page, methods=["GET"], include_in_schema=False)
