"""central.yaml: errors name the file and the key; secrets never show."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from central.config import load_config


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
