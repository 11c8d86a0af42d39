"""The API's own documentation, for signed-in people only: ``/openapi.json``, ``/docs``
(Swagger UI) and ``/redoc`` need a read token (``Authorization: Bearer``) or a dashboard
session, and ``api.docs: false`` turns them off. Their scripts and styles are served
from here (``/api-docs-static/``, the files the ``fastapi-offline`` package ships:
Swagger UI, Apache-2.0; ReDoc, MIT; their license headers kept), never from a CDN:
command centers often have no internet."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from central.api.deps import CentralDep

ASSETS = "/api-docs-static"
_bearer = HTTPBearer(auto_error=False)


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def _signed_in(
    request: Request,
    central: CentralDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> bool:
    if credentials is not None and central.tokens.verify(credentials.credentials) is not None:
        return True
    dashboard = getattr(request.app.state, "dashboard", None)
    if dashboard is not None:
        from central.dashboard.session import COOKIE

        return dashboard.sessions.read(request.cookies.get(COOKIE)) is not None
    return False


SignedIn = Annotated[bool, Depends(_signed_in)]


def _page(request: Request, signed_in: bool) -> None:
    if not signed_in:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in to the dashboard or send a read token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _sign_in_first(request: Request, signed_in: bool) -> RedirectResponse | None:
    """For the HTML pages: a browser without a session (no ``Authorization`` header) is
    sent to the sign-in page, coming back here after; a bad token gets the 401."""
    if not signed_in and "authorization" not in request.headers:
        return RedirectResponse(f"/?next={request.url.path}", status_code=303)
    _page(request, signed_in)
    return None


router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi(request: Request, signed_in: SignedIn) -> JSONResponse:
    _page(request, signed_in)
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs", response_model=None)
def swagger(request: Request, signed_in: SignedIn) -> HTMLResponse | Response:
    if (sign_in := _sign_in_first(request, signed_in)) is not None:
        return sign_in
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Pantau central API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )


@router.get("/redoc", response_model=None)
def redoc(request: Request, signed_in: SignedIn) -> HTMLResponse | Response:
    if (sign_in := _sign_in_first(request, signed_in)) is not None:
        return sign_in
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Pantau central API",
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


def mount(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="api-docs-static")
    app.include_router(router)
