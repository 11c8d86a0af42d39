"""Central holds the line (issue 15), on real mosquitto and InfluxDB 1.6.7: no gateway and
no setting can cost another gateway's readings; dead letters replay after a fix."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import wire
from central.tokens import token_store
from scripts.services import InfluxDB, Mosquitto, free_port
from tests.central.helpers import (
    BASE_TS,
    CentralProcess,
    Publisher,
    central_yaml,
    counter_values,
    telemetry,
    wait_for,
)
from tests.central.influx_proxy import InfluxProxy
from wire.retry import Backoff

LATER = BASE_TS + 14 * 86_400_000  # another InfluxDB shard (shard groups are 7 days)


def _central(tmp_path: Path, broker: Mosquitto, influx_url: str, db: str) -> CentralProcess:
    port = free_port()
    config = central_yaml(
        tmp_path / "central.yaml", broker.url, influx_url, db, tmp_path / "data", port
    )
    return CentralProcess(config, port, tmp_path / "central.log")


def _reader(tmp_path: Path) -> dict[str, str]:
    store = token_store(tmp_path / "data")
    try:
        return {"Authorization": f"Bearer {store.create('read')[1]}"}
    finally:
        store.close()


def _metric(central: CentralProcess, headers: dict[str, str], sample: str) -> float:
    text = httpx.get(f"{central.url}/metrics", headers=headers, timeout=5).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _letters(tmp_path: Path) -> list[dict]:
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "registry.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM dead_letters ORDER BY id")]


def _straddling(gateway: str, seq: int) -> bytes:
    """Ten readings now and ten in a later shard, in one message."""
    readings = [
        {"device": "counter", "metric": "count", "value": i, "ts": BASE_TS + i * 1000}
        for i in range(500, 510)
    ] + [
        {"device": "counter", "metric": "count", "value": i, "ts": LATER + i * 1000}
        for i in range(510, 520)
    ]
    doc = {"v": 1, "gateway": gateway, "seq": seq, "site": "kota-test", "readings": readings}
    return json.dumps(doc).encode()


def _shard_holding(influx: InfluxDB, db: str, ts_ms: int) -> int:
    from datetime import datetime

    [series] = [s for s in influx.query("SHOW SHARDS")["results"][0]["series"] if s["name"] == db]
    col = series["columns"].index
    for row in series["values"]:
        start = datetime.fromisoformat(row[col("start_time")]).timestamp() * 1000
        end = datetime.fromisoformat(row[col("end_time")]).timestamp() * 1000
        if start <= ts_ms < end:
            return int(row[col("id")])
    raise AssertionError(f"no shard of {db} holds {ts_ms}")


def test_a_poisoning_gateway_costs_the_good_one_nothing_and_dead_letters_replay_after_a_fix(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    good, bad = f"{gateway_id}-good", f"{gateway_id}-bad"
    # something else (not central) wrote a string into a shard days ahead
    resp = httpx.post(
        f"{influx.url}/write",
        params={"db": influx_db, "precision": "ms"},
        content=f'readings,device=counter,gateway=intruder count="poison" {LATER}\n'.encode(),
    )
    assert resp.status_code == 204, resp.text
    central = _central(tmp_path, broker, influx.url, influx_db).start()
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    try:
        poison = [
            {"device": "counter", "metric": "count", "value": "lots", "ts": BASE_TS + 1},
            {"device": "counter", "metric": "count", "value": True, "ts": BASE_TS + 2},
        ]
        doc = {"v": 1, "gateway": bad, "seq": 1, "site": "kota-test", "readings": poison}
        pub.publish(f"pantau/v1/{bad}/telemetry", json.dumps(doc).encode())  # first, on purpose
        seq = 1
        for first in range(0, 500, 100):
            pub.publish(f"pantau/v1/{good}/telemetry", telemetry(good, seq, first, 100))
            seq += 1
        pub.publish(f"pantau/v1/{good}/telemetry", _straddling(good, seq))
        pub.wait_acked(seq + 1)

        wait_for(lambda: len(counter_values(influx, influx_db, good)) >= 510, 30, "510 stored")
        assert counter_values(influx, influx_db, good) == list(range(510))
        text = influx.values(
            f"SELECT \"count\" FROM readings_text WHERE gateway = '{bad}'", influx_db
        )
        assert [row[1] for row in text] == ["lots"]  # stored apart, refused nothing
        wait_for(lambda: _letters(tmp_path), 10, "the refused lines dead-lettered")
        [letter] = _letters(tmp_path)
        assert (letter["reason"], letter["gateway"]) == ("influx_rejected", good)
        assert len(letter["lines"].split("\n")) == 10  # only the lines in the poisoned shard
        assert "already exists as type string" in letter["detail"]

        # the fix: the poisoned shard held nothing but the intruder's point
        influx.query(f"DROP SHARD {_shard_holding(influx, influx_db, LATER)}")
        replay = subprocess.run(
            [sys.executable, "-m", "central", "dead-letters", "replay", "--reason",
             "influx_rejected", "-c", str(central.config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "replayed: 1 stored, 0 refused again" in replay.stdout
        assert counter_values(influx, influx_db, good) == list(range(520))
        assert _letters(tmp_path) == []
    finally:
        pub.close()
        central.stop()


def test_influxdb_refusing_writes_with_401_then_429_holds_everything_and_dead_letters_nothing(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    proxy = InfluxProxy(influx.url).start()
    central = _central(tmp_path, broker, proxy.url, influx_db).start()
    headers = _reader(tmp_path)
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    try:
        wait_for(lambda: central.ready()["ready"], 10, "central ready")
        proxy.refuse(401, 3.0)  # a wrong token, then a rate limit
        proxy.refuse(429, 6.0, retry_after="1")
        seq = 1
        for first in range(0, 300, 50):
            pub.publish(f"pantau/v1/{gateway_id}/telemetry", telemetry(gateway_id, seq, first, 50))
            seq += 1
        pub.wait_acked(seq - 1)
        held = wait_for(lambda: central.ready().get("holding"), 5, "readyz to say why")
        assert held["reason"] == "401" and "authorization failed" in held["detail"]
        assert not central.ready()["ready"]
        wait_for(lambda: (central.ready().get("holding") or {}).get("reason") == "429", 15, "429")
        wait_for(lambda: len(counter_values(influx, influx_db, gateway_id)) >= 300, 30, "all")
        assert counter_values(influx, influx_db, gateway_id) == list(range(300))
        wait_for(lambda: central.ready()["ready"], 10, "ready again")
        assert _letters(tmp_path) == []
        assert proxy.answered[401] and proxy.answered[429]
        assert _metric(central, headers, 'pantau_write_held_total{reason="401"}') >= 1
        assert _metric(central, headers, 'pantau_write_held_total{reason="429"}') >= 1
        assert _metric(central, headers, "pantau_write_holding") == 0
        assert (
            _metric(central, headers, 'pantau_messages_rejected_total{reason="influx_rejected"}')
            == 0
        )
        log = central.output()
        assert log.count("InfluxDB answered 401") == 1  # said once per cause
        assert log.count("InfluxDB answered 429") == 1
        assert log.count("is back after") == 1  # and once on recovery
    finally:
        pub.close()
        central.stop()
        proxy.stop()


def test_a_gateway_using_centrals_client_id_cannot_take_its_queued_readings(
    tmp_path: Path, influx: InfluxDB, influx_db: str, monkeypatch
) -> None:
    """The broker configured by ``pantau-provision broker-config`` binds client ids to
    usernames: a gateway sending central's client id (clean start) while central is down
    neither wipes nor takes central's queue."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from provisioning.cli import main as provision
    from scripts.services import find_binary, wait_port

    monkeypatch.setenv("PANTAU_PROVISION_STATE", str(tmp_path / "state"))
    port, bdir, persist = free_port(), tmp_path / "broker", tmp_path / "persist"
    persist.mkdir()
    bundles = tmp_path / "bundles"
    assert provision(["gateway", "add", "gw-a", "--site", "S", "--broker", f"mqtt://127.0.0.1:{port}",
                      "--out", str(bundles)]) == 0  # fmt: skip
    assert provision(["broker-config", "--out", str(bdir), "--conf-dir", str(bdir),
                      "--port", str(port), "--bind", "127.0.0.1",
                      "--persistence-dir", f"{persist}/"]) == 0  # fmt: skip
    user = "user root\n" if os.geteuid() == 0 else ""
    (tmp_path / "run.conf").write_text(user + (bdir / "mosquitto.conf").read_text())
    with open(tmp_path / "mosquitto.log", "wb") as out:
        broker = subprocess.Popen(
            [find_binary("mosquitto"), "-c", str(tmp_path / "run.conf")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = free_port()
    config = central_yaml(
        tmp_path / "central.yaml", f"mqtt://127.0.0.1:{port}", influx.url, influx_db,
        tmp_path / "data", api,
        mqtt={"client_id": "pantau-central", "username": "pantau-central",
              "password_file": str(bdir / "central.password")},
    )  # fmt: skip
    central = CentralProcess(config, api, tmp_path / "central.log")
    password = (bundles / "gw-a" / "mqtt.password").read_text().strip()
    clients = []

    def client(client_id: str, clean: bool) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        c.username_pw_set("gw-a", password)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
        return c

    try:
        wait_port(port, proc=broker)
        central.start()
        wait_for(lambda: central.ready()["broker"], 10, "central subscribed")
        central.stop()  # away: its persistent session queues for it
        gateway = client("gw-a", clean=False)
        infos = [
            gateway.publish("pantau/v1/gw-a/telemetry", telemetry("gw-a", n + 1, 2 * n, 2), qos=1)
            for n in range(50)
        ]
        for info in infos:
            info.wait_for_publish(10)
        thief = client("pantau-central", clean=True)  # central's client id, a clean start
        time.sleep(1.0)
        thief.disconnect()
        central.start()
        wait_for(lambda: len(counter_values(influx, influx_db, "gw-a")) >= 100, 30, "100 readings")
        assert counter_values(influx, influx_db, "gw-a") == list(range(100))
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        central.stop()
        broker.terminate()
        broker.wait(10)


@pytest.mark.parametrize("status", [403, 404, 503])
def test_every_setting_or_load_refusal_holds_and_a_413_splits_the_batch(
    tmp_path: Path, influx: InfluxDB, influx_db: str, status: int
) -> None:
    """Ingest's writer alone (no broker): a batch meets a refusal window, then a body
    limit; it is all stored, in parts, and nothing is dead-lettered."""
    from central.config import CentralConfig
    from central.influx import V1Writer
    from central.ingest import Ingest, Pending
    from central.metrics import Metrics
    from central.registry import Registry
    from wire.structs import convert

    proxy = InfluxProxy(influx.url).start()
    config = convert(
        {"influx": {"url": proxy.url, "database": influx_db}, "data_dir": str(tmp_path)},
        CentralConfig,
    )
    registry = Registry(tmp_path / "registry.db")
    ingest = Ingest(config, registry, V1Writer(config.influx), Metrics())
    ingest.backoff = Backoff(0.05, 0.2)  # the test's patience, not production's
    try:
        items = []
        for n in range(10):
            message = wire.decode("telemetry", telemetry("gw-split", n + 1, n * 50, 50))
            lines = ingest.encoder.telemetry(message, "kota")
            items.append(Pending(n, 0, "pantau/v1/gw-split/telemetry", "gw-split", lines, b"{}"))
        proxy.refuse(status, 0.5)
        proxy.max_body = 8_000  # ~100 lines: the 500-line batch is split
        ingest._write(items)
        assert counter_values(influx, influx_db, "gw-split") == list(range(500))
        assert proxy.answered[status] >= 1 and proxy.answered[413] >= 1
        assert registry.dead_letters() == []
        assert ingest.hold_reason is None  # recovered
        assert ingest.metrics.registry.get_sample_value(
            "pantau_write_held_total", {"reason": str(status)}
        )
    finally:
        ingest.writer.close()
        registry.close()
        proxy.stop()
