"""The whole chain on real services: agent → mosquitto → central → InfluxDB."""

import re
import signal
from pathlib import Path

from scripts.services import InfluxDB, free_port
from tests.e2e.helpers import (
    Program,
    agent_yaml,
    assert_contiguous,
    central_yaml,
    counts,
    http_status,
    never_sampled,
    run_cli,
    wait_for,
    wait_stable,
)
from tests.e2e.influx_v2_recorder import V2Recorder


def _start(
    tmp_path: Path, broker, gateway_id: str, influx_block: str
) -> tuple[Program, Program, int]:
    api_port = free_port()
    (tmp_path / "central.yaml").write_text(
        central_yaml(
            broker.url, influx_block, tmp_path / "central", f"central-{gateway_id}", api_port
        )
    )
    (tmp_path / "agent.yaml").write_text(agent_yaml(gateway_id, broker.url, tmp_path / "buffer.db"))
    central = Program("central", tmp_path / "central.yaml", tmp_path / "central.log").start()
    # central's persistent session must exist before the gateway speaks: until its
    # first subscription the broker has nobody to keep messages for
    wait_for(lambda: "subscribed to" in central.output)
    agent = Program("agent", tmp_path / "agent.yaml", tmp_path / "agent.log").start()
    return central, agent, api_port


def test_counter_reaches_influxdb_v1_exactly_once(tmp_path, broker, influx, influx_db, gateway_id):
    block = f"  url: {influx.url}\n  api: v1\n  database: {influx_db}\n"
    central, agent, _ = _start(tmp_path, broker, gateway_id, block)
    try:
        wait_for(lambda: len(counts(influx, influx_db, gateway_id)) >= 30, timeout=30)
        assert agent.stop() == 0, agent.output
        # everything the agent sampled before it stopped is stored: the count settles
        wait_stable(lambda: counts(influx, influx_db, gateway_id))
    finally:
        agent.stop()
        central.stop()
    rows = counts(influx, influx_db, gateway_id)
    values = [v for _, v in rows]
    assert len(values) >= 30
    assert_contiguous(values, never_sampled(agent.output))
    # the sample time is the tick: count == ts / interval, exactly
    assert all(v == t // 100 for t, v in rows)
    assert "Traceback" not in central.output + agent.output


def test_counter_reaches_v2_write_api_exactly_once(tmp_path, broker, gateway_id):
    recorder = V2Recorder(org="diskominfo", bucket="pantau", token="tok-123").start()
    recorder.fail_next = 2  # the first writes fail with 503 and must be retried
    block = (
        f"  url: {recorder.url}\n  api: v2\n  org: diskominfo\n  bucket: pantau\n  token: tok-123\n"
    )
    central, agent, _ = _start(tmp_path, broker, gateway_id, block)
    pattern = re.compile(
        rf"^readings,device=counter-1,gateway={gateway_id},site=ambon count=(\S+) (\d+)$"
    )

    def stored() -> dict[int, float]:
        points = {}
        for line in list(recorder.lines):
            m = pattern.match(line)
            if m:
                points[int(m.group(2))] = float(m.group(1))
        return points

    try:
        wait_for(lambda: len(stored()) >= 30, timeout=30)
        assert agent.stop() == 0
        wait_stable(stored)
    finally:
        agent.stop()
        central.stop()
        recorder.stop()
    assert recorder.errors == []
    points = stored()
    values = [points[t] for t in sorted(points)]
    assert_contiguous(values, never_sampled(agent.output))
    assert recorder.requests >= 3


def test_influxdb_unreachable_at_start_then_recovers(tmp_path, broker, gateway_id):
    port = free_port()
    block = f"  url: http://127.0.0.1:{port}\n  api: v1\n  database: pantau\n"
    central, agent, api_port = _start(tmp_path, broker, gateway_id, block)
    late = InfluxDB(tmp_path / "influx-late", port=port)
    try:
        wait_for(lambda: "InfluxDB unreachable" in central.output, timeout=20)
        assert central.proc is not None and central.proc.poll() is None  # no crash
        assert wait_for(lambda: http_status(f"http://127.0.0.1:{api_port}/readyz")) == 503
        late.start()
        wait_for(lambda: len(counts(late, "pantau", gateway_id)) >= 20, timeout=40)
        agent.stop()
        stored = wait_stable(lambda: counts(late, "pantau", gateway_id))
    finally:
        agent.stop()
        central.stop()
        late.stop()
    assert_contiguous([v for _, v in stored], never_sampled(agent.output))


def test_central_rejects_spoofed_malformed_and_oversized(
    tmp_path, broker, influx, influx_db, gateway_id
):
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    block = f"  url: {influx.url}\n  api: v1\n  database: {influx_db}\n"
    api_port = free_port()
    (tmp_path / "central.yaml").write_text(
        central_yaml(broker.url, block, tmp_path / "central", f"central-{gateway_id}", api_port)
    )
    token = run_cli(
        "central", "token", "create", "--role", "read", "-c", str(tmp_path / "central.yaml")
    )
    secret = token.stdout.strip().splitlines()[-1]
    central = Program("central", tmp_path / "central.yaml", tmp_path / "central.log").start()
    reading = {"device": "d1", "metric": "level_cm", "value": 1.5, "ts": 1_700_000_000_000}
    good = {"v": 1, "gateway": gateway_id, "seq": 1, "site": "ambon", "readings": [reading]}
    bad = [
        (f"pantau/v1/{gateway_id}/telemetry", json.dumps({**good, "gateway": "gw-intruder"})),
        (f"pantau/v1/{gateway_id}/telemetry", "{not json"),
        (f"pantau/v1/{gateway_id}/telemetry", json.dumps({**good, "readings": "nope"})),
        (f"pantau/v1/{gateway_id}/telemetry", json.dumps({**good, "pad": "x" * 300_000})),
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{gateway_id}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        import urllib.request

        def metrics() -> str:
            req = urllib.request.Request(
                f"http://127.0.0.1:{api_port}/metrics",
                headers={"Authorization": f"Bearer {secret}"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.read().decode()

        wait_for(lambda: "subscribed to" in central.output)
        for topic, payload in bad:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.publish(
            f"pantau/v1/{gateway_id}/telemetry", json.dumps(good), qos=1
        ).wait_for_publish(5)
        wait_for(lambda: influx.values("SELECT * FROM readings", influx_db), timeout=20)
        wait_for(lambda: 'reason="too_large"' in metrics())
        text = metrics()
        for reason in ("gateway_mismatch", "bad_json", "schema", "too_large"):
            assert re.search(rf'pantau_messages_rejected_total{{reason="{reason}"}} [1-9]', text), (
                reason
            )
        # the histograms, and process_* from prometheus-client, in the running program
        wait_for(lambda: re.search(r"^pantau_ingest_latency_seconds_count [1-9]", metrics(), re.M))
        text = metrics()
        assert re.search(r"^pantau_write_latency_seconds_count [1-9]", text, re.M)
        assert re.search(r"^process_resident_memory_bytes [1-9]", text, re.M)
        assert central.proc.poll() is None
    finally:
        client.loop_stop()
        client.disconnect()
        central.stop(signal.SIGTERM)
    rows = influx.values("SELECT level_cm FROM readings", influx_db)
    assert [r[1] for r in rows] == [1.5]  # the intruder's copy never landed
