"""Central as its systemd unit runs it: ``systemctl reload`` (the unit's ExecReload
commands, run for real against a running central) reloads the rules file and
central.yaml's webhooks; JSON logs without timestamps when standard error is the
journal; UMask and reload lines in the unit."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from scripts.services import Mosquitto, free_port
from tests.e2e.helpers import Program, run_cli, wait_for

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "pantau-central.service"

ONE_RULE = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level_cm}
    above: 300
"""
TWO_RULES = (
    ONE_RULE
    + """
  - name: gateway-offline
    kind: offline
    after: 5m
"""
)
BAD_RULES = (
    ONE_RULE
    + """
  - name: broken
    kind: threshold
    match: {metric: level_cm}
    abvoe: 3
"""
)


def unit_lines(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def central_config(tmp: Path, broker: Mosquitto, webhooks: list[str], api_port: int) -> dict:
    return {
        "mqtt": {"url": broker.url, "client_id": f"central-{tmp.name}"},
        "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "unused"},
        "data_dir": str(tmp / "data"),
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "rules_file": str(tmp / "rules.yaml"),
        "log": {"format": "json"},
        "webhooks": [
            {"name": name, "url": f"http://127.0.0.1:9/{name}", "secret": f"s-{name}"}
            for name in webhooks
        ],
    }


def systemctl_reload(config: Path, pid: int) -> subprocess.CompletedProcess[str]:
    """The unit's ExecReload lines in order, as systemd runs them (stop at a failure),
    with ``pantau-central`` from this checkout and ``$MAINPID`` set."""
    for line in unit_lines("ExecReload"):
        argv = shlex.split(line.replace("$MAINPID", str(pid)))
        if argv[0].endswith("/pantau-central"):
            argv = [sys.executable, "-m", "central", *argv[1:]]
            argv[argv.index("/etc/pantau/central.yaml")] = str(config)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            return result
    return result


def test_unit_reloads_with_sighup_after_a_check_and_keeps_files_private() -> None:
    reload = unit_lines("ExecReload")
    assert reload[-1] == "/bin/kill -HUP $MAINPID"
    assert reload[0] == "/usr/local/bin/pantau-central check --offline -c /etc/pantau/central.yaml"
    assert unit_lines("UMask") == ["0077"]
    assert unit_lines("ExecStart") == [
        "/usr/local/bin/pantau-central run -c /etc/pantau/central.yaml"
    ]


def test_systemctl_reload_reloads_rules_and_webhooks_and_keeps_them_when_bad(
    tmp_path: Path, broker: Mosquitto
) -> None:
    api_port = free_port()
    (tmp_path / "rules.yaml").write_text(ONE_RULE)
    config = tmp_path / "central.yaml"
    config.write_text(yaml.safe_dump(central_config(tmp_path, broker, ["ops"], api_port)))
    token = run_cli("central", "token", "create", "--role", "read", "-c", str(config))
    secret = token.stdout.strip().splitlines()[-1]
    log = tmp_path / "central.log"
    log.touch()
    # standard error is the journal: JOURNAL_STREAM names its device and inode
    st = os.stat(log)
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        central = Program("central", config, log).start()
    finally:
        del os.environ["JOURNAL_STREAM"]
    assert central.proc is not None
    api = f"http://127.0.0.1:{api_port}/api/v1"
    headers = {"Authorization": f"Bearer {secret}"}

    def get(path: str) -> list[str]:
        try:
            body = httpx.get(api + path, headers=headers, timeout=5).json()
        except httpx.HTTPError:
            return []
        items = body["rules"] if isinstance(body, dict) else body
        return sorted(item["name"] for item in items)

    try:
        wait_for(lambda: get("/rules") == ["river-high"], timeout=30)
        assert get("/webhooks") == ["ops"]

        (tmp_path / "rules.yaml").write_text(TWO_RULES)
        config.write_text(
            yaml.safe_dump(central_config(tmp_path, broker, ["ops", "pager"], api_port))
        )
        assert systemctl_reload(config, central.proc.pid).returncode == 0
        wait_for(lambda: get("/rules") == ["gateway-offline", "river-high"])
        wait_for(lambda: get("/webhooks") == ["ops", "pager"])

        # a bad rules file: the reload fails at the check, and even a bare SIGHUP
        # keeps the rules in force
        (tmp_path / "rules.yaml").write_text(BAD_RULES)
        failed = systemctl_reload(config, central.proc.pid)
        assert failed.returncode != 0 and "abvoe" in failed.stderr
        os.kill(central.proc.pid, 1)  # SIGHUP
        wait_for(lambda: "rules not reloaded" in central.output)
        assert get("/rules") == ["gateway-offline", "river-high"]
        assert central.proc.poll() is None
    finally:
        assert central.stop() == 0

    lines = [line for line in central.output.splitlines() if line.strip()]
    assert len(lines) >= 4
    for line in lines:
        # journald's priority prefix, then one JSON object without a timestamp
        match = re.fullmatch(r"<([0-7])>(.*)", line)
        assert match, line
        if not match.group(2).startswith("{"):
            continue  # a traceback's continuation line
        entry = json.loads(match.group(2))
        assert "ts" not in entry
        assert {"level", "logger", "message"} <= set(entry)
    messages = [json.loads(line[3:])["message"] for line in lines if line[3:].startswith("{")]
    assert any(m.startswith("webhooks reloaded from") and "added pager" in m for m in messages)
    assert any(m.startswith("rules reloaded from") for m in messages)
    assert "<3>" in central.output  # the refused rules file is logged as an error
