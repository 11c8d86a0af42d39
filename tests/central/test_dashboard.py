"""The dashboard without a browser: sign-in and sessions, CSRF on admin forms,
languages, the river / tapping-box / network pages from real InfluxDB data, and
gateway health stored from real MQTT messages (tests/e2e/test_dashboard_browser.py
drives the pages in chromium)."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.config import CentralConfig
from central.dashboard.session import COOKIE
from central.service import Central
from scripts.services import InfluxDB, Mosquitto
from tests.central.helpers import Publisher, wait_for
from wire.structs import convert

RULES = """\
rules:
  - name: river-siaga
    kind: levels
    match: {profile: "river/*", metric: level_m}
    levels: {waspada: 2.5, siaga: 3.0, awas: 3.5}
  - name: box-silent
    kind: stale
    match: {profile: "tapping-box/*"}
    after: 30m
"""


def _central(tmp_path: Path, influx: InfluxDB, db: str, **extra: Any) -> Central:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "rules.yaml").write_text(RULES)
    doc = {
        "influx": {"url": influx.url, "database": db, "flush_interval": "50ms"},
        "data_dir": str(tmp_path / "data"),
        "rules_file": str(tmp_path / "rules.yaml"),
        **extra,
    }
    return Central(convert(doc, CentralConfig))


@pytest.fixture
def central(tmp_path: Path, influx: InfluxDB, influx_db: str) -> Iterator[Central]:
    c = _central(tmp_path, influx, influx_db, dashboard={"language": "en"})
    yield c
    c.close()


def _sign_in(client: TestClient, token: str) -> None:
    response = client.post("/signin", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def test_sign_in_sets_a_signed_http_only_strict_cookie(
    client: TestClient, central: Central
) -> None:
    form = client.get("/")
    assert form.status_code == 200
    assert 'type="password"' in form.text and 'name="token"' in form.text
    assert "script-src 'self'" in form.headers["content-security-policy"]

    wrong = client.post("/signin", data={"token": "pt_not-a-token"})
    assert wrong.status_code == 401
    assert "Wrong or revoked token." in wrong.text
    assert COOKIE not in wrong.cookies

    info, secret = central.tokens.create("read", "wall")
    response = client.post(
        "/signin", data={"token": secret, "next": "/river"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/river"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain http here
    assert secret not in cookie and secret[3:] not in cookie
    assert "Sign out" in client.get("/").text

    # a tampered cookie is no session; a revoked token ends every session made with it
    value = client.cookies[COOKIE]
    client.cookies.set(COOKIE, value[:-1] + ("0" if value[-1] != "0" else "1"))
    assert client.get("/gateways", follow_redirects=False).status_code == 303
    client.cookies.set(COOKIE, value)
    assert client.get("/gateways").status_code == 200
    central.tokens.revoke(info.id)
    away = client.get("/gateways", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/?next=/gateways"
    assert client.get("/gateways?partial=1").status_code == 401  # the script reloads


def test_sign_in_is_secure_behind_https(tmp_path: Path, influx: InfluxDB, influx_db: str) -> None:
    c = _central(tmp_path, influx, influx_db, api={"external_url": "https://pantau.example.id"})
    try:
        with TestClient(create_app(c.config, c)) as client:
            secret = c.tokens.create("read")[1]
            response = client.post("/signin", data={"token": secret}, follow_redirects=False)
            assert "Secure" in response.headers["set-cookie"]
    finally:
        c.close()


def test_only_a_local_next_is_followed(client: TestClient, central: Central) -> None:
    secret = central.tokens.create("read")[1]
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post(
            "/signin", data={"token": secret, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/", target


def test_admin_forms_need_an_admin_and_the_form_token(client: TestClient, central: Central) -> None:
    _sign_in(client, central.tokens.create("read", "wall")[1])
    csrf = _csrf(client.get("/incidents").text)
    assert client.post("/incidents/999/ack", data={"csrf": csrf}).status_code == 403

    client.cookies.clear()
    _sign_in(client, central.tokens.create("admin", "duty")[1])
    csrf = _csrf(client.get("/incidents").text)
    assert client.post("/incidents/999/ack", data={}).status_code == 403
    assert client.post("/incidents/999/ack", data={"csrf": "x" * 64}).status_code == 403
    assert client.post("/incidents/999/ack", data={"csrf": csrf}).status_code == 404
    assert client.post("/incidents/999/silence", data={"csrf": csrf}).status_code == 404
    # sign-out is a form too
    assert client.post("/signout", data={}).status_code == 403
    out = client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/gateways", follow_redirects=False).status_code == 303


def test_indonesian_is_the_default_and_english_is_configurable(
    tmp_path: Path, influx: InfluxDB, influx_db: str, client: TestClient, central: Central
) -> None:
    central.registry.create_gateway("gw-baru", site="ambon")
    _sign_in(client, central.tokens.create("read")[1])
    english = client.get("/gateways").text
    assert ">Gateways<" in english and ">Incidents<" in english and "never seen" in english

    c = _central(tmp_path / "id", influx, influx_db)
    try:
        assert c.config.dashboard.language == "id"
        c.registry.create_gateway("gw-baru", site="ambon")
        with TestClient(create_app(c.config, c)) as other:
            _sign_in(other, c.tokens.create("read")[1])
            page = other.get("/gateways").text
            assert ">Insiden<" in page and "belum pernah terlihat" in page
            assert 'lang="id"' in page
    finally:
        c.close()


def _write(influx: InfluxDB, db: str, lines: list[str]) -> None:
    response = httpx.post(
        f"{influx.url}/write", params={"db": db, "precision": "ms"}, content="\n".join(lines)
    )
    assert response.status_code == 204, response.text


def _state(central: Central, gateway: str, site: str, devices: list[tuple[str, str]]) -> None:
    import wire

    message = wire.State(
        gateway=gateway,
        seq=1,
        status="online",
        ts=int(time.time() * 1000),
        site=site,
        agent_version="test",
        devices=[wire.DeviceInfo(id=d, profile=p, driver="x") for d, p in devices],
    )
    central.registry.state(message)


def test_river_tapping_and_network_pages_show_the_stored_values(
    client: TestClient, central: Central, influx: InfluxDB, influx_db: str
) -> None:
    now = int(time.time() * 1000)
    _state(central, "gw-sungai", "bogor", [("level-1", "river/radar-level-abcd")])
    _state(central, "gw-resto", "ambon", [("box-1", "tapping-box/escpos-generic")])
    _state(central, "gw-net", "ambon", [("cam-1", "network/tcp"), ("app-1", "network/http")])
    _write(
        influx,
        influx_db,
        [
            f"readings,device=level-1,gateway=gw-sungai,site=bogor level_m=2.9 {now - 300_000}",
            f"readings,device=level-1,gateway=gw-sungai,site=bogor level_m=3.1 {now - 1000}",
            f"events,device=box-1,gateway=gw-resto,kind=receipt total=110000.0,tax=10000.0,"
            f"bytes=300.0 {now - 2000}",
            f"events,device=box-1,gateway=gw-resto,kind=receipt total=55000.0,tax=5000.0,"
            f"bytes=280.0 {now - 1000}",
            f"readings,device=cam-1,gateway=gw-net up=1.0,connect_ms=12.5 {now - 1000}",
            f"readings,device=app-1,gateway=gw-net up=0.0,latency_ms=900.0 {now - 1000}",
        ],
    )
    _sign_in(client, central.tokens.create("read")[1])

    river = client.get("/river").text
    row = river[river.index('data-device="level-1"') :]
    assert "3.1" in row and "b-siaga" in row and "waspada ≥ 2.5" in row
    assert "▲ +0.2" in row  # 2.9 → 3.1 in the last 10 minutes

    tapping = client.get("/tapping").text
    row = tapping[tapping.index('data-device="box-1"') :]
    assert ">2<" in row and "Rp 165.000" in row and "Rp 15.000" in row

    network = client.get("/network").text
    cam = network[network.index('data-device="cam-1"') :]
    app = network[network.index('data-device="app-1"') :]
    assert "s-online" in cam.split("</tr>")[0] and "12.5 ms" in cam.split("</tr>")[0]
    assert "s-offline" in app.split("</tr>")[0] and "900 ms" in app.split("</tr>")[0]


def test_the_gateway_page_shows_text_readings_escaped(
    client: TestClient, central: Central, influx: InfluxDB, influx_db: str
) -> None:
    now = int(time.time() * 1000)
    _state(central, "gw-pompa", "bogor", [("pump-1", "water/pump-abc")])
    tags = "device=pump-1,gateway=gw-pompa,site=bogor"
    _write(
        influx,
        influx_db,
        [
            f"readings,{tags} flow_lps=12.5 {now - 60_000}",
            f"readings,{tags} flow_lps=13.25 {now - 1000}",
            f'readings_text,{tags} firmware="v2.<b>1</b> & \\"beta\\"" {now - 2000}',
        ],
    )
    _sign_in(client, central.tokens.create("read")[1])
    page = client.get("/gateways/gw-pompa").text
    assert "InfluxDB did not answer" not in page
    flow = page[page.index('data-metric="flow_lps"') :].split("</tr>")[0]
    assert '<td class="n value">13.25</td>' in flow and "q-good" in flow
    assert "<polyline" in flow  # numbers keep their sparkline
    firmware = page[page.index('data-metric="firmware"') :].split("</tr>")[0]
    assert '<td class="value text">v2.&lt;b&gt;1&lt;/b&gt; &amp; &#34;beta&#34;</td>' in firmware
    assert "q-good" in firmware and "<polyline" not in firmware  # no sparkline for text
    assert "<b>1</b>" not in page


def test_overview_counts_agree_with_the_api(client: TestClient, central: Central) -> None:
    central.registry.create_gateway("gw-a", site="ambon", lat=-3.7, lon=128.2)
    central.registry.create_gateway("gw-b", site="bogor", lat=-6.6, lon=106.8)
    central.registry.heard("gw-a", "ambon", 1)
    for _ in range(3):
        central.registry.dead_letter("pantau/v1/gw-a/telemetry", "gw-a", "bad_json", "x", b"{")
    reader = central.tokens.create("read")[1]
    _sign_in(client, reader)
    page = client.get("/").text
    api = client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {reader}"}).json()
    letters = client.get("/api/v1/dead-letters", headers={"Authorization": f"Bearer {reader}"})
    for status in ("online", "offline", "never-seen"):
        expected = sum(1 for g in api if g["status"] == status)
        assert f'data-count="{status}">{expected}<' in page, status
    assert f'data-count="dead-letters">{len(letters.json())}<' in page
    assert page.count('class="marker ') == 2


def test_health_is_stored_in_influxdb_and_the_registry(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    c = _central(
        tmp_path, influx, influx_db, mqtt={"url": broker.url, "client_id": f"c-{gateway_id}"}
    )
    c.registry.create_gateway(gateway_id, site="kota-ambon")  # the site is the registry's
    c.start()
    publisher = Publisher(broker.port, f"p-{gateway_id}")
    try:
        wait_for(c.ingest.connected.is_set, 20, "central subscribed")
        ts = int(time.time() * 1000)
        health = {
            "v": 1,
            "gateway": gateway_id,
            "seq": 7,
            "ts": ts,
            "site": "ambon",
            "uptime_s": 3725.0,
            "buffer_depth": 42,
            "dropped": 3,
            "devices": {"level-1": {"status": "failing", "error": "timeout"}},
        }
        publisher.publish(f"pantau/v1/{gateway_id}/health", json.dumps(health).encode())
        stored = wait_for(lambda: c.registry.latest_health(gateway_id), 20, "health stored")
        assert stored["buffer_depth"] == 42 and stored["dropped"] == 3

        def point() -> list[Any]:
            q = f"SELECT * FROM gateway_health WHERE gateway = '{gateway_id}'"
            try:
                return influx.values(q, influx_db)
            except Exception:
                return []

        rows = wait_for(point, 20, "gateway_health point")
        columns = influx.query(
            f"SELECT * FROM gateway_health WHERE gateway = '{gateway_id}'", influx_db
        )["results"][0]["series"][0]["columns"]
        row = dict(zip(columns, rows[0], strict=True))
        assert row["time"] == ts and row["site"] == "kota-ambon"  # not the payload's "ambon"
        assert row["buffer_depth"] == 42.0 and row["dropped"] == 3.0
        assert row["devices_failing"] == 1.0 and row["uptime_s"] == 3725.0

        with TestClient(create_app(c.config, c)) as client:
            auth = {"Authorization": f"Bearer {c.tokens.create('read')[1]}"}
            one = client.get(f"/api/v1/gateways/{gateway_id}/health", headers=auth).json()
            assert one["buffer_depth"] == 42 and one["ts"] == ts
            assert one["devices"]["level-1"]["status"] == "failing"
            listed = client.get("/api/v1/gateways", headers=auth).json()
            assert next(g for g in listed if g["id"] == gateway_id)["health"]["dropped"] == 3
            _sign_in(client, c.tokens.create("read")[1])
            page = client.get("/gateways").text
            row_html = page[page.index(f'data-gateway="{gateway_id}"') :].split("</tr>")[0]
            assert 'data-field="buffer_depth">42<' in row_html
            assert 'data-field="uptime">1h 2m<' in row_html
            # an older health message never replaces a newer one
            older = {**health, "seq": 8, "ts": ts - 60_000, "buffer_depth": 1}
            publisher.publish(f"pantau/v1/{gateway_id}/health", json.dumps(older).encode())
            wait_for(lambda: len(point()) == 2, 20, "second point")
            assert c.registry.latest_health(gateway_id)["buffer_depth"] == 42
    finally:
        publisher.close()
        c.stop()


def test_a_gateway_shows_offline_within_the_offline_rules_time(
    tmp_path: Path, influx: InfluxDB, influx_db: str, central: Central
) -> None:
    assert central.offline_after() == central.config.offline_after == 180.0  # no offline rule
    rules = RULES + "  - {name: gw-silent, kind: offline, after: 45s}\n"
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "rules.yaml").write_text(rules)
    doc = {
        "influx": {"url": influx.url, "database": influx_db},
        "data_dir": str(tmp_path / "short"),
        "rules_file": str(tmp_path / "short" / "rules.yaml"),
    }
    c = Central(convert(doc, CentralConfig))
    try:
        assert c.offline_after() == 45.0
    finally:
        c.close()


def test_the_map_draws_tiles_from_the_configured_server_only(
    tmp_path: Path, influx: InfluxDB, influx_db: str
) -> None:
    tiles = "https://tiles.kota.go.id/{z}/{x}/{y}.png"
    c = _central(tmp_path, influx, influx_db, dashboard={"map_tiles": tiles})
    try:
        c.registry.create_gateway("gw-peta", site="ambon", lat=-3.7, lon=128.2)
        with TestClient(create_app(c.config, c)) as client:
            _sign_in(client, c.tokens.create("read")[1])
            page = client.get("/")
            # zoom 4 fits the archipelago (94-142 E) in 960 px: tiles x 12..14
            assert '<image href="https://tiles.kota.go.id/4/13/7.png"' in page.text
            assert "indonesia" not in page.text and 'class="land"' not in page.text
            assert page.text.count('class="marker ') == 1
            policy = page.headers["content-security-policy"]
            assert "img-src 'self' data: https://tiles.kota.go.id;" in policy
    finally:
        c.close()


def test_every_asset_is_served_by_central_itself() -> None:
    """No page or asset names another server (command centers often have no internet)."""
    import re

    import central.dashboard

    root = Path(central.dashboard.__file__).parent
    files = [*root.glob("templates/*.html"), *root.glob("static/*")]
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), path
        for ref in re.findall(r'(?:src|href)="(/[^"]*)"', text):
            if ref.startswith("/static/"):
                assert (root / ref.removeprefix("/")).is_file(), (path, ref)
