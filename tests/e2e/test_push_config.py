"""``pantau-central gateway push-config`` end to end: central (its admin API and its
broker identity) → a real mosquitto → a running agent, which switches to the new device
list; a bad list is refused with the agent's reason and the running devices keep polling."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from scripts.services import free_port
from tests.agent.test_faults import AgentProcess, Recorder, wait_for, write_config
from tests.agent.test_remote_config import BLINK, OLD, sampled_after
from tests.e2e.helpers import Program, central_yaml, http_status, run_cli


def push(config: Path, token: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central", "gateway", "push-config", "-c", str(config), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PANTAU_CENTRAL_TOKEN": token},
    )


def test_push_config_through_central_changes_what_the_agent_polls(
    tmp_path: Path, broker, influx, influx_db, gateway_id
) -> None:
    api_port = free_port()
    config = tmp_path / "central.yaml"
    block = f"  url: {influx.url}\n  api: v1\n  database: {influx_db}\n"
    config.write_text(
        central_yaml(broker.url, block, tmp_path / "central", f"central-{gateway_id}", api_port)
    )
    tokens = {
        role: run_cli("central", "token", "create", "--role", role, "-c", str(config))
        .stdout.strip()
        .splitlines()[-1]
        for role in ("admin", "read")
    }
    central = Program("central", config, tmp_path / "central.log").start()
    agent_config = write_config(tmp_path / "agent.yaml", gateway_id, broker.port, devices=OLD)
    recorder = Recorder(broker.port, gateway_id, f"rec-{gateway_id}", persistent=False).start()
    agent = AgentProcess(agent_config)
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_for(
            lambda: http_status(f"{api}/api/v1/gateways/{gateway_id}", tokens["read"]) == 200,
            30,
            "central to hear the gateway",
        )
        wait_for(lambda: http_status(f"{api}/readyz") == 200, 30, "central ready")
        profiles = tmp_path / "profiles" / "site"
        profiles.mkdir(parents=True)
        (profiles / "blink.yaml").write_text(yaml.safe_dump(BLINK))
        devices = tmp_path / "devices.yaml"
        devices.write_text(
            "devices:\n"
            "  - {id: new-1, profile: site/blink, interval: 200ms}\n"
            "  - {id: new-2, profile: simulated/counter, interval: 200ms}\n"
        )
        args = [gateway_id, str(devices), "--profiles-dir", str(tmp_path / "profiles")]
        done = push(config, tokens["admin"], *args)
        assert done.returncode == 0, done.stderr
        assert f"{gateway_id}: applied (apply-config-" in done.stdout
        assert "2 device(s) running: new-1, new-2" in done.stdout
        applied_ms = int(time.time() * 1000)
        wait_for(
            lambda: {"new-1", "new-2"} <= sampled_after(recorder, applied_ms),
            10,
            "the pushed devices polled",
        )
        time.sleep(1.0)
        assert "old-1" not in sampled_after(recorder, applied_ms + 500)

        bad = tmp_path / "bad.yaml"
        bad.write_text("devices:\n  - {id: x-1, profile: simulated/nope}\n")
        refused = push(config, tokens["admin"], gateway_id, str(bad))
        assert refused.returncode == 1
        assert f"error: {gateway_id}: refused: apply-config: kept the running devices:" in (
            refused.stderr
        )
        assert "simulated/nope" in refused.stderr
        assert "warning: devices[0].profile: 'simulated/nope' is not shipped" in refused.stdout
        refused_ms = int(time.time() * 1000)
        wait_for(
            lambda: {"new-1", "new-2"} <= sampled_after(recorder, refused_ms + 500),
            10,
            "the running devices still polled",
        )
        assert "x-1" not in sampled_after(recorder, 0)

        # the API: admin only, a known gateway only
        url = f"{api}/api/v1/gateways/{gateway_id}/config"
        body = {"devices": []}
        read = httpx.post(url, json=body, headers={"Authorization": f"Bearer {tokens['read']}"})
        assert read.status_code == 403
        nobody = push(config, tokens["admin"], "gw-nobody", str(devices))
        assert nobody.returncode == 1 and "HTTP 404" in nobody.stderr
    finally:
        agent.stop()
        recorder.stop()
        central.stop()
