"""``make demo`` end to end: ``scripts.demo up`` with the timeline six times faster, then
``down``. Everything it starts is real: mosquitto, InfluxDB, central, two agents, the
pymodbus river sensor, the POS replaying golden receipts through ptys, the city app,
the webhook receiver."""

import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from central.alerts.signing import verify
from scripts.demo import _start_time
from scripts.demo_devices import River
from scripts.services import InfluxDB
from tests.e2e.helpers import wait_for

SPEED = "6"


def _demo(action: str, run: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.demo", action, "--dir", str(run), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _dashboard_pages(api: str, token: str, *paths: str) -> list[str]:
    """Sign in at the dashboard with ``token`` as a browser would, then fetch ``paths``."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = urllib.parse.urlencode({"token": token, "next": "/"}).encode()
    with opener.open(f"{api}/signin", data=form, timeout=10) as answer:  # 303 → the overview
        assert answer.status == 200 and answer.url == f"{api}/"
    pages = []
    for path in paths:
        with opener.open(f"{api}{path}", timeout=10) as answer:
            pages.append(answer.read().decode())
    return pages


def _api(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_demo_shows_all_three_families_fires_the_river_incident_and_stops_everything(
    tmp_path: Path,
) -> None:
    run = tmp_path / "demo"
    pids: dict[str, Any] = {}
    try:
        up = _demo("up", run, "--speed", SPEED, timeout=150)  # ~10 s; more on a loaded machine
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((run / "state.json").read_text())
        pids = json.loads((run / "pids.json").read_text())

        # what a newcomer is told
        assert f"dashboard    {state['api']}/" in up.stdout
        token = re.search(r"read token   (pt_\S+)", up.stdout)
        assert token is not None, up.stdout
        assert "make demo-stop" in up.stdout
        assert "signature ok" in up.stdout and "river-siaga" in up.stdout

        # readings of all three families reached InfluxDB
        influx = InfluxDB(run / "influxdb", port=int(state["influx_url"].rsplit(":", 1)[1]))
        db = state["database"]
        levels = influx.values(
            "SELECT level_cm FROM readings WHERE device = 'batu-merah-level'", db
        )
        assert len(levels) >= 3 and all(200 <= v <= 370 for _, v in levels), levels
        assert levels[0][1] < 250 < levels[-1][1], "the river rose from its low through waspada"
        tips = influx.values("SELECT rain_tips FROM readings WHERE device = 'batu-merah-rain'", db)
        assert tips, "the rain gauge (unit 2 on the same Modbus TCP port) is read"
        checks = influx.values(
            "SELECT \"up\", device FROM readings WHERE gateway = 'gw-demo-sungai' "
            "AND device =~ /^lapor-kota/",
            db,
        )
        assert {row[2] for row in checks} == {"lapor-kota-http", "lapor-kota-port"}
        receipts = influx.values(
            "SELECT total FROM events WHERE kind = 'receipt' AND device = 'kasir-1'", db
        )
        assert receipts and all(total > 0 for _, total in receipts), receipts
        numbers = influx.values(  # the printed texts are stored apart from the amounts
            "SELECT receipt_no FROM events_text WHERE kind = 'receipt' AND device = 'kasir-1'", db
        )
        assert any(number for _, number in numbers), numbers

        # the river incident fired, in the API (the dashboard's source) and at the receiver
        incidents = _api(f"{state['api']}/api/v1/incidents", token.group(1))
        river = [i for i in incidents if i["rule"] == "river-siaga"]
        assert river and river[0]["device"] == "batu-merah-level", incidents
        secret = (run / "webhook.secret").read_text().strip()
        hooks = [json.loads(line) for line in (run / "webhooks.jsonl").read_text().splitlines()]
        firing = [
            h
            for h in hooks
            if json.loads(h["body"])["commonLabels"]["alertname"] == "river-siaga"
            and json.loads(h["body"])["status"] == "firing"
        ]
        assert firing, hooks
        hook = firing[0]
        assert hook["signed"]
        headers = {k.lower(): v for k, v in hook["headers"].items()}
        body, signature = hook["body"].encode(), headers["x-pantau-signature"]
        delivery, at = headers["x-pantau-delivery"], hook["received"]
        assert verify(secret, body, signature, delivery, now=at)
        assert not verify("not-the-secret", body, signature, delivery, now=at)
        assert not verify(secret, body, signature, delivery + "-forged", now=at)
        assert json.loads(hook["body"])["commonLabels"]["level"] in ("waspada", "siaga", "awas")

        # ... and on the dashboard, signed in with the printed read token
        incidents_page, gateways_page = _dashboard_pages(
            state["api"], token.group(1), "/incidents", "/gateways"
        )
        assert "river-siaga" in incidents_page and "batu-merah-level" in incidents_page
        assert "gw-demo-sungai" in gateways_page and "gw-demo-resto" in gateways_page

        # the gateways' health is stored too (what the fleet dashboards read)
        health = wait_for(
            lambda: influx.values(
                'SELECT last("uptime_s") FROM gateway_health GROUP BY "gateway"', db
            ),
            timeout=20,
        )
        assert len(health) == 2, health

        assert set(pids) == {
            "mosquitto", "influxd", "receiver", "devices", "central", "agent-sungai", "agent-resto"
        }  # fmt: skip
        assert all(_start_time(p["pid"]) == p["start"] for p in pids.values()), "all running"
    finally:
        down = _demo("down", run, timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "demo stopped" in down.stdout
    assert not (run / "pids.json").exists()
    still = [name for name, p in pids.items() if _start_time(p["pid"]) == p["start"]]
    assert not still, f"still running after down: {still}"


def test_the_demo_river_crosses_the_siaga_bands_on_time() -> None:
    river = River()
    assert [river.level_cm(t) for t in (0, 20, 40, 60, 68, 98)] == [200, 250, 300, 350, 370, 370]
    assert river.level_cm(98 + 68) == 200 and river.level_cm(river.period) == 200
    assert river.registers(20) == [2500, 3500, 0]  # mm, as river/radar-level-mm reads them
