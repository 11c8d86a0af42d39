"""The dashboard's pages: ``/`` (sign-in, then the overview), ``/gateways``,
``/gateways/<id>``, ``/river``, ``/tapping``, ``/network``, ``/incidents``,
``/dead-letters``, ``/webhooks``; assets under ``/static``.

Every page renders its live part alone when asked with ``?partial=1``: the page's
script fetches that every ``dashboard.refresh`` and swaps it in, so values update
without a reload. Pages send a Content-Security-Policy that allows only this
origin (plus the tile server when ``dashboard.map_tiles`` is set).
"""

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from central.config import CentralConfig
from central.dashboard import views
from central.dashboard.i18n import words
from central.dashboard.session import COOKIE, Session, Sessions, load_key
from central.service import Central

STATIC = Path(__file__).parent / "static"
MAX_FORM = 4096


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _rupiah(value: float | None) -> str:
    if value is None:
        return "-"
    return "Rp " + f"{round(value):,}".replace(",", ".")


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("central.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_number, rupiah=_rupiah, clock=_clock, duration=_duration, ago=views.ago)
    return env


class Dashboard:
    """Renders pages for one Central; holds the template environment and sessions."""

    def __init__(self, config: CentralConfig, central: Central) -> None:
        self.config = config
        self.central = central
        self.env = environment()
        self.words = words(config.dashboard.language)
        self.sessions = Sessions(
            load_key(config.data_dir), central.tokens, config.dashboard.session_max_age
        )
        tiles = config.dashboard.map_tiles
        tile_origin = ""
        if tiles:
            parts = urlsplit(tiles.replace("{s}", "a"))
            tile_origin = f" {parts.scheme}://{parts.netloc}"
        self.csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' data:{tile_origin}; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )

    def headers(self) -> dict[str, str]:
        return {
            "Content-Security-Policy": self.csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        }

    def render(
        self,
        request: Request,
        page: str,
        session: Session | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        now = time.time()
        values = {
            "t": self.words,
            "lang": self.config.dashboard.language,
            "page": page,
            "session": session,
            "now": now,
            "refresh": self.config.dashboard.refresh,
            "map_tiles": self.config.dashboard.map_tiles,
            "partial_template": f"_{page}.html",
            **context,
        }
        name = f"_{page}.html" if request.query_params.get("partial") else "page.html"
        html = self.env.get_template(name).render(values)
        return HTMLResponse(html, status_code=status_code, headers=self.headers())


def get_dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]


def _session(request: Request, dashboard: Dashboard) -> Session | None:
    return dashboard.sessions.read(request.cookies.get(COOKIE))


def _to_signin(request: Request) -> Response:
    if request.query_params.get("partial"):
        return Response("signed out", status_code=401)  # the script reloads the page
    return RedirectResponse(f"/?next={quote(request.url.path)}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    return {k: v[0] for k, v in parsed.items()}


def _secure(request: Request, dashboard: Dashboard) -> bool:
    external = dashboard.config.api.external_url or ""
    return request.url.scheme == "https" or external.startswith("https://")


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


router = APIRouter(include_in_schema=False)


def page(name: str, build: Callable[[Central, float], dict[str, Any]]) -> Any:
    """A read-only page: its data from ``build``, rendered for any signed-in token."""

    def handler(request: Request, dashboard: DashboardDep) -> Response:
        session = _session(request, dashboard)
        if session is None:
            return _to_signin(request)
        return dashboard.render(request, name, session, **build(dashboard.central, time.time()))

    handler.__name__ = f"page_{name.replace('-', '_')}"
    return handler


@router.get("/", response_class=HTMLResponse)
def index(request: Request, dashboard: DashboardDep) -> Response:
    session = _session(request, dashboard)
    if session is None:
        if request.query_params.get("partial"):
            return _to_signin(request)
        return dashboard.render(
            request, "signin", None, next=_safe_next(request.query_params.get("next"))
        )
    return dashboard.render(
        request, "overview", session, **views.overview(dashboard.central, time.time())
    )


@router.post("/signin")
async def signin(request: Request, dashboard: DashboardDep) -> Response:
    form = await _form(request)
    token = form.get("token", "").strip()
    info = dashboard.central.tokens.verify(token) if token else None
    target = _safe_next(form.get("next"))
    if info is None:
        return dashboard.render(
            request,
            "signin",
            None,
            status_code=401,
            error=dashboard.words["wrong_token"],
            next=target,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        dashboard.sessions.issue(info.id),
        max_age=int(dashboard.config.dashboard.session_max_age),
        httponly=True,
        samesite="strict",
        secure=_secure(request, dashboard),
        path="/",
    )
    return response


@router.post("/signout")
async def signout(request: Request, dashboard: DashboardDep) -> Response:
    session = _session(request, dashboard)
    form = await _form(request)
    if session is not None and not dashboard.sessions.csrf_ok(session, form.get("csrf")):
        return Response(dashboard.words["csrf"], status_code=403)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


router.add_api_route("/gateways", page("gateways", lambda c, now: {"gateways": views.gateways(c)}))
router.add_api_route("/river", page("river", views.river))
router.add_api_route("/tapping", page("tapping", views.tapping))
router.add_api_route("/network", page("network", lambda c, now: views.network(c)))
router.add_api_route("/incidents", page("incidents", views.incidents))
router.add_api_route(
    "/dead-letters", page("dead-letters", lambda c, now: {"letters": views.dead_letters(c)})
)
router.add_api_route(
    "/webhooks", page("webhooks", lambda c, now: {"deliveries": views.deliveries(c)})
)


@router.get("/gateways/{gateway_id}", response_class=HTMLResponse)
def gateway_page(gateway_id: str, request: Request, dashboard: DashboardDep) -> Response:
    session = _session(request, dashboard)
    if session is None:
        return _to_signin(request)
    data = views.gateway(dashboard.central, gateway_id, time.time())
    if data is None:
        return dashboard.render(
            request, "missing", session, status_code=404, what=f"gateway {gateway_id}"
        )
    return dashboard.render(request, "gateway", session, **data)


async def _admin_form(
    request: Request, dashboard: Dashboard
) -> tuple[Session | None, dict[str, str], Response | None]:
    session = _session(request, dashboard)
    if session is None:
        return None, {}, _to_signin(request)
    form = await _form(request)
    if not dashboard.sessions.csrf_ok(session, form.get("csrf")):
        return session, form, Response(dashboard.words["csrf"], status_code=403)
    if not session.admin:
        return session, form, Response(dashboard.words["admin_only"], status_code=403)
    return session, form, None


@router.post("/incidents/{incident_id}/ack")
async def ack(incident_id: int, request: Request, dashboard: DashboardDep) -> Response:
    session, form, refused = await _admin_form(request, dashboard)
    if refused is not None or session is None:
        return refused or _to_signin(request)
    alerts = dashboard.central.alerts
    row = alerts.incidents.ack(
        incident_id,
        session.name or f"token {session.token_id}",
        form.get("comment", ""),
        alerts.now(),
    )
    if row is None:
        return Response(f"no incident {incident_id}", status_code=404)
    return RedirectResponse("/incidents", status_code=303)


SILENCE_HOURS = (1, 4, 24)


@router.post("/incidents/{incident_id}/silence")
async def silence(incident_id: int, request: Request, dashboard: DashboardDep) -> Response:
    """Silence what the incident is about (its rule, gateway and device) for 1, 4 or 24 h."""
    session, form, refused = await _admin_form(request, dashboard)
    if refused is not None or session is None:
        return refused or _to_signin(request)
    alerts = dashboard.central.alerts
    row = alerts.incidents.get(incident_id)
    if row is None:
        return Response(f"no incident {incident_id}", status_code=404)
    hours = int(form.get("hours", "1")) if form.get("hours", "1").isdigit() else 1
    if hours not in SILENCE_HOURS:
        hours = 1
    labels = row["labels"]
    matchers = {k: labels[k] for k in ("alertname", "gateway", "device") if labels.get(k)}
    now = alerts.now()
    alerts.silences.create(
        matchers=matchers,
        starts_at=now,
        ends_at=now + hours * 3600,
        comment=form.get("comment", "") or f"from the dashboard, incident {incident_id}",
        created_by=session.name or f"token {session.token_id}",
        now=now,
    )
    return RedirectResponse("/incidents", status_code=303)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(
        (STATIC / "favicon.svg").read_bytes(),
        media_type="image/svg+xml",
        headers={"Cache-Control": "max-age=86400"},
    )


def mount(app: FastAPI, settings: CentralConfig, central: Central) -> None:
    """Serve the dashboard and its assets from ``app``."""
    app.state.dashboard = Dashboard(settings, central)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
