"""central.yaml: errors name the file and the key; secrets never show."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from central.config import load_config, redacted


def check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central", "check", "--offline", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


GOOD = """\
mqtt:
  url: mqtt://127.0.0.1:1883
  username: central
  password: hunter2-mqtt
influx:
  url: http://127.0.0.1:8086
  api: v1
  database: pantau
data_dir: {data}
api:
  listen: 127.0.0.1:8080
"""


def test_the_pinned_example_is_valid_and_check_hides_secrets(tmp_path):
    path = tmp_path / "central.yaml"
    path.write_text(GOOD.format(data=tmp_path / "data"))
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr


V1 = "influx:\n  url: http://127.0.0.1:8086\n  api: v1\n  database: pantau\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "influx:\n  url: http://127.0.0.1:8086\n  api: v1\n  database: pantau\n  colour: red\n",
            "influx.colour: unknown key",
        ),
        (
            "influx:\n  url: http://127.0.0.1:8086\n  api: v2\n  org: kota\n",
            "influx: api v2 needs 'bucket', 'token'",
        ),
        (
            "influx:\n  url: ftp://x\n  api: v1\n  database: pantau\n",
            "influx.url: expected http://host:port or https://host:port (got 'ftp://x')",
        ),
        ("influx:\n  url: http://127.0.0.1:8086\n  api: v3\n  database: pantau\n", "influx.api:"),
        (
            "influx:\n  url: http://127.0.0.1:8086\n  api: v1\n  database: pantau\n"
            "api:\n  listen: localhost\n",
            "api.listen: expected host:port",
        ),
        (
            "influx:\n  url: http://127.0.0.1:8086\n  api: v1\n  database: pantau\n"
            "mqtt:\n  url: mqtt://x:1883\n  password: topsecret-1\n  password_file: p\n",
            "mqtt: give password or password_file, not both",
        ),
        (
            f"{V1}mqtt:\n  receive_maximum: 0\n",
            "mqtt.receive_maximum: Expected `int` >= 1 (got 0)",
        ),
        (
            f"{V1}mqtt:\n  shared_group: a/b\n",
            "mqtt.shared_group: a shared group name must be non-empty without '/', '+' or '#'",
        ),
        (f"{V1}offline_after: soon\n", "offline_after: invalid duration 'soon'"),
        (
            f"{V1}database:\n  url: mysql://u@db/pantau\n",
            "database.url: expected postgresql://user:password@host:port/database",
        ),
        (
            f"{V1}database:\n  url: postgresql://db.example\n",
            "database.url: expected postgresql://user:password@host:port/database (host and",
        ),
        ("api:\n  listen: 127.0.0.1:8080\n", "influx: required key is missing"),
        (
            f"{V1}webhooks:\n  - name: ops\n    url: http://127.0.0.1:9/hook\n",
            "webhooks[0]: a webhook needs 'secret' or 'secret_file' to sign its payloads",
        ),
        (
            f"{V1}webhooks:\n  - name: ops\n    url: mailto:x@y\n    secret: topsecret-2\n",
            "webhooks[0].url: expected an http:// or https:// URL",
        ),
        (
            f"{V1}webhooks:\n"
            "  - {name: ops, url: 'http://127.0.0.1:9/a', secret: topsecret-3}\n"
            "  - {name: ops, url: 'http://127.0.0.1:9/b', secret: topsecret-4}\n",
            "webhooks: webhook name 'ops' is used twice",
        ),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, change, expected):
    path = tmp_path / "central.yaml"
    path.write_text(change + f"data_dir: {tmp_path}\n")
    result = check(path)
    assert result.returncode == 2
    assert f"error: {path}: {expected}" in result.stderr
    assert "topsecret" not in result.stderr


def test_environment_overrides_secrets(tmp_path):
    path = tmp_path / "central.yaml"
    path.write_text(
        "influx:\n  url: http://127.0.0.1:8086\n  api: v2\n  org: kota\n  bucket: pantau\n"
        f"data_dir: {tmp_path}\n"
    )
    assert check(path).returncode == 2  # no token anywhere
    result = check(path, {"PANTAU_INFLUX__TOKEN": "tok-from-env"})
    assert result.returncode == 0, result.stderr
    assert "tok-from-env" not in result.stdout + result.stderr
    os.environ["PANTAU_INFLUX__TOKEN"] = "tok-from-env"
    try:
        assert load_config(path).influx.secret("token") == "tok-from-env"
    finally:
        del os.environ["PANTAU_INFLUX__TOKEN"]


def test_missing_file_is_named(tmp_path):
    result = check(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read" in result.stderr


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "influx.token").write_text("tok-from-file\n")
    path = folder / "central.yaml"
    path.write_text(
        "influx:\n  url: http://127.0.0.1:8086/\n  api: v2\n  org: kota\n  bucket: pantau\n"
        "  token_file: influx.token\n"
        "data_dir: data\nrules_file: rules.yaml\n"
    )
    config = load_config(path)
    assert config.data_dir == folder / "data"
    assert config.rules_file == folder / "rules.yaml"
    assert config.influx.secret("token") == "tok-from-file"
    assert config.influx.url == "http://127.0.0.1:8086"  # trailing slash dropped
    assert config.mqtt.session_expiry == 7 * 86400.0  # defaults are there too


def test_redacted_hides_every_secret(tmp_path):
    path = tmp_path / "central.yaml"
    path.write_text(
        GOOD.format(data=tmp_path / "data")
        + "webhooks:\n  - {name: ops, url: 'http://127.0.0.1:9/a', secret: hook-secret}\n"
    )
    data = redacted(load_config(path))
    assert data["mqtt"]["password"] == "**redacted**"
    assert data["webhooks"][0]["secret"] == "**redacted**"
    assert data["influx"]["password"] is None
    assert data["mqtt"]["keepalive"] == "30s"
    assert data["data_dir"] == str(tmp_path / "data")
    assert "hunter2" not in repr(data) and "hook-secret" not in repr(data)


def test_the_database_password_is_hidden_and_may_come_from_the_environment(tmp_path):
    path = tmp_path / "central.yaml"
    path.write_text(GOOD.format(data=tmp_path / "data"))
    url = "postgresql://pantau:pg-s3cret@db.example:5432/pantau"
    os.environ["PANTAU_DATABASE__URL"] = url
    try:
        config = load_config(path)
    finally:
        del os.environ["PANTAU_DATABASE__URL"]
    assert config.database.url == url
    shown = redacted(config)["database"]["url"]
    assert shown == "postgresql://pantau:**redacted**@db.example:5432/pantau"
    assert redacted(load_config(path))["database"]["url"] is None  # default: SQLite


def test_a_trailing_slash_on_the_influx_url_is_dropped_but_not_on_a_webhook(tmp_path):
    path = tmp_path / "central.yaml"
    text = GOOD.format(data=tmp_path / "data").replace("8086", "8086/")
    text += "webhooks:\n  - {name: ops, url: 'https://hooks.example/in/', secret: s3cret-hook}\n"
    path.write_text(text)
    config = load_config(path)
    assert config.influx.url == "http://127.0.0.1:8086"
    assert config.webhooks[0].url == "https://hooks.example/in/"
