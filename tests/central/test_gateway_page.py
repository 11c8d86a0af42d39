"""The QR label's URL, ``<central>/gateways/<id>``, is answered by central (never a 404):
the dashboard's page when it serves one, else a redirect to the gateway in the API."""

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.api.routes import gateway_page
from central.service import Central
from provisioning.cli import main as provision
from provisioning.label import _qr
from provisioning.label import gateway_page as label_url


def svg_matrix(svg: str) -> set[tuple[int, int]]:
    """The dark cells of the QR code in a label SVG."""
    rects = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', svg)
    return {(round(float(x) / float(w)), round(float(y) / float(w))) for x, y, w in rects}


def test_the_label_opens_the_gateways_page_on_central(
    tmp_path: Path,
    central: Central,
    client: TestClient,
    admin: dict[str, str],
    reader: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PANTAU_PROVISION_STATE", str(tmp_path / "state"))
    central_url = "https://pantau.kota.go.id/"
    argv = ["gateway", "add", "gw-qr-1", "--site", "Pasar Mardika"]
    argv += ["--broker", "mqtt://127.0.0.1:1883", "--out", str(tmp_path / "b")]
    assert provision(argv) == 0
    out = tmp_path / "label.svg"
    assert provision(["label", "gw-qr-1", "--central", central_url, "--out", str(out)]) == 0
    url = "https://pantau.kota.go.id/gateways/gw-qr-1"
    assert label_url(central_url, "gw-qr-1") == url
    # the QR code holds exactly the URL, so a phone's camera opens it
    svg = out.read_text()
    expected = {
        (x, y) for y, row in enumerate(_qr(url).get_matrix()) for x, on in enumerate(row) if on
    }
    assert svg_matrix(svg) == expected
    assert url in svg  # and in words under the id and site

    # central answers that path with the dashboard's page: sign in first, then the page
    assert (
        client.post(
            "/api/v1/gateways", json={"id": "gw-qr-1", "site": "Pasar Mardika"}, headers=admin
        ).status_code
        == 201
    )
    path = url.removeprefix("https://pantau.kota.go.id")
    first = client.get(path, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/?next=/gateways/gw-qr-1"
    token = reader["Authorization"].removeprefix("Bearer ")
    signed_in = client.post("/signin", data={"token": token, "next": "/gateways/gw-qr-1"})
    assert signed_in.status_code == 200 and signed_in.url.path == path
    assert "gw-qr-1" in signed_in.text and "Pasar Mardika" in signed_in.text
    assert client.get("/gateways/gw-nobody").status_code == 404
    assert "/gateways/{gateway_id}" not in client.app.openapi()["paths"]  # type: ignore[attr-defined]


def test_a_dashboard_route_for_the_page_wins_over_the_fallback() -> None:
    app = FastAPI()

    @app.get("/gateways/{id}")
    def dashboard_page(id: str) -> PlainTextResponse:
        return PlainTextResponse(f"dashboard page of {id}")

    assert gateway_page.served(app)
    before = len(app.routes)
    gateway_page.add_fallback(app)
    assert len(app.routes) == before
    with TestClient(app) as client:
        assert client.get("/gateways/gw-1").text == "dashboard page of gw-1"


def test_centrals_dashboard_serves_the_page_once(central: Central) -> None:
    app = create_app(central.config, central)
    paths = [getattr(r, "path", "") for r in app.routes]
    assert paths.count(gateway_page.PATH) == 1
