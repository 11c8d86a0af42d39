"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a
real central, agent (simulated devices), mosquitto and InfluxDB.

Set ``PANTAU_SCREENSHOT=docs/img/dashboard.png`` to write the README's screenshot.
"""

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from central.tokens import token_store
from scripts.services import InfluxDB, free_port
from tests.e2e.helpers import Program, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OFFLINE_AFTER = 3.0  # the offline rule's `after` (shorter than central's offline_after)
HOUSEKEEPING = 2.0  # central marks silent gateways offline this often
REFRESH = 1.0  # dashboard.refresh

RULES = f"""\
rules:
  - name: counter-runaway
    kind: threshold
    match: {{device: counter-1, metric: count}}
    above: 0
    severity: critical
    annotations: {{summary: "{{device}} counted past {{threshold}}"}}
  - name: gateway-silent
    kind: offline
    after: {OFFLINE_AFTER}s
"""

# gateways the technician registered elsewhere in the archipelago (never seen), so the
# overview's map and counts show more than one site
OTHERS = [
    ("gw-banjir-ciliwung", "jakarta", -6.2, 106.85),
    ("gw-pajak-makassar", "makassar", -5.14, 119.42),
    ("gw-tower-jayapura", "jayapura", -2.53, 140.72),
    ("gw-sungai-samarinda", "samarinda", -0.5, 117.15),
]


class Stack:
    def __init__(self, base: str, gateway: str, read: str, admin: str, agent: Program) -> None:
        self.base, self.gateway, self.read, self.admin, self.agent = (
            base,
            gateway,
            read,
            admin,
            agent,
        )

    def api(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.read}"}
        response = httpx.get(self.base + path, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def stack(tmp_path: Path, broker, influx: InfluxDB, influx_db: str, gateway_id: str) -> Iterator:
    data_dir = tmp_path / "central"
    tokens = token_store(data_dir)
    read = tokens.create("read", "wall")[1]
    admin = tokens.create("admin", "duty-officer")[1]
    tokens.close()
    (tmp_path / "rules.yaml").write_text(RULES)
    port = free_port()
    central_doc = {
        "mqtt": {"url": broker.url, "client_id": f"central-{gateway_id}"},
        "influx": {"url": influx.url, "database": influx_db, "flush_interval": "50ms"},
        "data_dir": str(data_dir),
        "api": {"listen": f"127.0.0.1:{port}"},
        "rules_file": str(tmp_path / "rules.yaml"),
        "alerts": {"evaluation_interval": "200ms"},
        "dashboard": {"language": "en", "refresh": f"{REFRESH}s"},
    }
    (tmp_path / "central.yaml").write_text(json.dumps(central_doc))
    agent_doc = {
        "gateway": {"id": gateway_id, "site": "ambon"},
        "mqtt": {"url": broker.url},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "health": {"interval": "1s"},
        "devices": [
            {
                "id": "counter-1",
                "profile": "simulated/counter",
                "interval": "500ms",
                "connection": {},
            },
            {"id": "level-1", "profile": "simulated/sine", "interval": "500ms", "connection": {}},
        ],
    }
    (tmp_path / "agent.yaml").write_text(json.dumps(agent_doc))
    central = Program("central", tmp_path / "central.yaml", tmp_path / "central.log").start()
    agent = Program("agent", tmp_path / "agent.yaml", tmp_path / "agent.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "subscribed to" in central.output, timeout=30)
        auth = {"Authorization": f"Bearer {admin}"}
        for gid, site, lat, lon in [(gateway_id, "ambon", -3.69, 128.18), *OTHERS]:
            body = {"id": gid, "site": site, "location": {"lat": lat, "lon": lon}}
            httpx.post(f"{base}/api/v1/gateways", json=body, headers=auth).raise_for_status()
        agent.start()
        s = Stack(base, gateway_id, read, admin, agent)
        # online, health stored, readings of both devices in InfluxDB, the rule firing
        wait_for(lambda: s.api(f"/api/v1/gateways/{gateway_id}")["health"] or {}, timeout=30)
        wait_for(
            lambda: len(s.api(f"/api/v1/readings/latest?gateway={gateway_id}")) >= 2, timeout=30
        )
        wait_for(lambda: s.api("/api/v1/incidents?state=firing"), timeout=30)
        yield s
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGCONT)
        agent.stop()
        central.stop()
    assert "Traceback" not in central.output, central.output[-3000:]


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watch:
    """Console errors, failed responses and requests to any other origin, per page."""

    def __init__(self, page: Any, origin: str) -> None:
        self.problems: list[str] = []
        self.origin = origin
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        # a refresh still in flight when the page navigates away is cancelled: fine
        if request.failure == "net::ERR_ABORTED" and "partial=1" in request.url:
            return
        self.problems.append(f"failed: {request.url} ({request.failure})")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "about", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.problems.append(f"request to another origin: {request.url}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"{response.status} for {response.url}")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _sign_in(page: Any, base: str, token: str, path: str = "/") -> None:
    page.goto(base + path)
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("nav")


def test_dashboard_in_chromium(stack: Stack, browser: Any) -> None:
    gw = stack.gateway
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    watch = Watch(page, stack.base)

    # sign in with a read token, on the way to the gateways page
    _sign_in(page, stack.base, stack.read, "/gateways")
    assert urlsplit(page.url).path == "/gateways"
    cookie = next(c for c in context.cookies() if c["name"] == "pantau_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert stack.read not in cookie["value"]
    nav = page.inner_text("nav")
    assert "Gateways" in nav and "Incidents" in nav
    row = page.locator(f"tr[data-gateway='{gw}']")
    assert "ambon" in row.inner_text()
    assert row.locator("[data-field=status]").inner_text() == "online"
    assert page.locator(
        "tr[data-gateway='gw-pajak-makassar'] [data-field=status]"
    ).inner_text() == ("never seen")

    # the gateway's page: its devices, and a reading that changes without a reload
    page.click(f"a[href='/gateways/{gw}']")
    page.wait_for_selector("[data-device='counter-1']")
    assert page.locator("[data-field=site]").inner_text() == "ambon"
    assert page.locator("[data-device='level-1']").count() == 1
    page.evaluate("window.__sameDocument = true")
    cell = "[data-device='counter-1'] tr[data-metric='count'] .value"
    first = page.inner_text(cell)
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel) &&"
        " document.querySelector(sel).textContent.trim() !== before",
        arg=[cell, first],
        timeout=15_000,
    )
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert int(page.inner_text(cell)) > int(first)
    unit = page.inner_text("[data-device='level-1'] tr[data-metric='level_cm'] td:nth-child(3)")
    assert unit == "cm"
    assert page.locator("[data-device='level-1'] .q-good").count() >= 1

    # a firing incident's rule name; a read token gets no buttons
    page.click("nav a[href='/incidents']")
    page.wait_for_selector("tr[data-incident] .rule")
    assert "counter-runaway" in page.inner_text("table.incidents")
    assert page.locator("button[name=ack]").count() == 0

    # the overview: counts and map agree with the API; screenshot for the README
    page.click("nav a[href='/']")
    page.wait_for_selector("svg .marker")
    gateways = stack.api("/api/v1/gateways")
    for status in ("online", "offline", "never-seen"):
        expected = sum(1 for g in gateways if g["status"] == status)
        assert page.inner_text(f"[data-count='{status}']") == str(expected), status
    firing = stack.api("/api/v1/incidents?state=firing")
    assert page.inner_text("[data-count=firing]") == str(len(firing))
    assert page.locator("svg .marker").count() == 1 + len(OTHERS)
    shot = os.environ.get("PANTAU_SCREENSHOT")
    if shot:
        page.wait_for_timeout(300)
        page.screenshot(path=shot, full_page=True)

    # an admin acknowledges the incident (a form with a CSRF token, SameSite=Strict cookie)
    admin_context = browser.new_context(viewport={"width": 1200, "height": 900})
    admin_page = admin_context.new_page()
    admin_watch = Watch(admin_page, stack.base)
    _sign_in(admin_page, stack.base, stack.admin, "/incidents")
    incident = next(i for i in firing if i["rule"] == "counter-runaway")
    admin_page.click(f"tr[data-incident='{incident['id']}'] button[name=ack]")
    admin_page.wait_for_selector(f"tr[data-incident='{incident['id']}'] >> text=Acknowledged")
    acked = stack.api(f"/api/v1/incidents/{incident['id']}")
    assert acked["acked_by"] == "duty-officer" and acked["state"] == "acknowledged"
    # ... and silences what it is about for 4 hours
    row = f"tr[data-incident='{incident['id']}']"
    admin_page.select_option(f"{row} select[name=hours]", "4")
    admin_page.click(f"{row} button[name=silence]")
    admin_page.wait_for_selector(f"{row} >> text=Silenced")
    (silence,) = stack.api("/api/v1/silences")
    assert silence["matchers"] == {
        "alertname": "counter-runaway",
        "gateway": gw,
        "device": "counter-1",
    }
    assert silence["created_by"] == "duty-officer"
    hours = (_epoch(silence["ends_at"]) - _epoch(silence["starts_at"])) / 3600
    assert hours == pytest.approx(4, abs=0.01)

    # the gateway stops sending (frozen, its connection left open): offline in time
    page.goto(f"{stack.base}/gateways/{gw}")
    assert stack.agent.proc is not None
    stack.agent.proc.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    # the rule's time, plus central's 2 s check, the page's refresh and slack for a busy machine
    within = OFFLINE_AFTER + HOUSEKEEPING + REFRESH + 3
    page.wait_for_selector("h1 .status.s-offline", timeout=within * 1000)
    took = time.monotonic() - stopped
    # not at once either: the agent's last message was at most ~1 s before it froze
    assert OFFLINE_AFTER - 1.5 <= took <= within, took
    assert page.inner_text("h1 .status") == "offline"
    # frozen values: the page and the API show the same numbers
    page.wait_for_timeout(REFRESH * 1500)
    latest = stack.api(f"/api/v1/readings/latest?gateway={gw}")
    page.reload()
    for reading in latest:
        selector = (
            f"[data-device='{reading['device']}'] tr[data-metric='{reading['metric']}'] .value"
        )
        shown = page.inner_text(selector)
        assert float(shown) == pytest.approx(reading["value"], abs=0.005), reading
    health = stack.api(f"/api/v1/gateways/{gw}")["health"]
    assert page.inner_text("[data-field=buffer_depth]") == str(health["buffer_depth"])
    assert page.inner_text("[data-field=dropped]") == str(health["dropped"])

    assert watch.problems == [], watch.problems
    assert admin_watch.problems == [], admin_watch.problems
    context.close()
    admin_context.close()
