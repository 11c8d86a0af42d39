"""Issue 15 item 5: what read tokens see, the API docs locked and served locally, private
data files, and payloads that are numbers or nesting no gateway can mean."""

import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.api.app import create_app
from central.api.routes.webhooks import redact_url
from central.config import CentralConfig
from central.service import Central
from scripts.services import InfluxDB
from wire.structs import convert

HOOK = "https://bot:hunter2@chat.example/bot123456:AAH-secret-token/sendMessage?chat_id=42&key=s3"


def _central(tmp_path: Path, influx: InfluxDB, db: str, **api: object) -> Central:
    config = convert(
        {
            "influx": {"url": influx.url, "database": db},
            "data_dir": str(tmp_path / "data"),
            "api": api,
            "webhooks": [{"name": "chat", "url": HOOK, "secret": "webhook-secret"}],
        },
        CentralConfig,
    )
    return Central(config)


@pytest.fixture
def central(tmp_path: Path, influx: InfluxDB, influx_db: str) -> Iterator[Central]:
    c = _central(tmp_path, influx, influx_db)
    yield c
    c.close()


def test_read_tokens_see_webhook_urls_without_credentials_or_tokens(
    client: TestClient, reader: dict[str, str], admin: dict[str, str]
) -> None:
    [hook] = client.get("/api/v1/webhooks", headers=reader).json()
    for secret in ("hunter2", "AAH-secret-token", "123456", "s3", "42", "webhook-secret"):
        assert secret not in json.dumps(hook)
    assert hook["url"].startswith("https://**redacted**@chat.example/")
    [full] = client.get("/api/v1/webhooks", headers=admin).json()
    assert full["url"] == HOOK  # an admin configures them: the whole URL
    assert redact_url("http://receiver.local:9000/alerts") == "http://receiver.local:9000/alerts"


def test_api_docs_need_a_read_token_and_load_nothing_from_a_cdn(
    client: TestClient, reader: dict[str, str]
) -> None:
    for path in ("/openapi.json", "/redoc", "/docs"):
        assert client.get(path, follow_redirects=False).status_code in (401, 303), path
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    schema = client.get("/openapi.json", headers=reader)
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "Pantau central"
    for path in ("/docs", "/redoc"):
        browser = client.get(path, follow_redirects=False)  # no session: sign in first
        assert browser.status_code == 303 and browser.headers["location"] == f"/?next={path}"
        page = client.get(path, headers=reader)
        assert page.status_code == 200
        assert "/api-docs-static/" in page.text
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        served = client.get(f"/api-docs-static/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000, asset


def test_api_docs_can_be_turned_off(tmp_path: Path, influx: InfluxDB, influx_db: str) -> None:
    central = _central(tmp_path, influx, influx_db, docs=False)
    try:
        token = central.tokens.create("read")[1]
        with TestClient(create_app(central.config, central)) as client:
            for path in ("/openapi.json", "/docs", "/redoc", "/api-docs-static/swagger-ui.css"):
                got = client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert got.status_code == 404, path
    finally:
        central.close()


def test_data_files_are_0600_and_the_data_dir_0700(central: Central) -> None:
    data = central.config.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert any(p.name == "registry.db" for p in files)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            '{"v":1,"gateway":"gw-h","seq":1,"readings":[{"device":"d","metric":"m","value":'
            + "9" * 4000
            + ',"ts":1}]}',
            "a number out of range",
        ),
        ('{"v":1,"gateway":"gw-h","seq":' + "9" * 4000 + ',"readings":[]}', "out of range"),
        (
            '{"v":1,"gateway":"gw-h","seq":1,"device":"d","kind":"k","ts":1,"data":{"a":'
            + "[" * 50_000
            + "]" * 50_000
            + "}}",
            "nested too deeply",
        ),
        (
            '{"v":1,"gateway":"gw-h","seq":1,"device":"d","kind":"k","ts":1,"data":{"a":'
            + "[" * 40
            + "]" * 40
            + "}}",
            "nested deeper than 32",
        ),
    ],
)
def test_huge_numbers_and_deep_nesting_are_bad_json_without_a_traceback(
    central: Central, caplog: pytest.LogCaptureFixture, payload: str, detail: str
) -> None:
    kind = "events" if '"kind"' in payload else "telemetry"
    topic = f"pantau/v1/gw-h/{kind}"
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            central.ingest.handle(topic, payload.encode(), mid=1)
    letters = central.registry.dead_letters(reason="bad_json")
    assert len(letters) == 50 and detail in letters[0]["detail"]
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    warnings = [r for r in caplog.records if "rejected a message" in r.getMessage()]
    assert len(warnings) == 1  # and said once, not fifty times
