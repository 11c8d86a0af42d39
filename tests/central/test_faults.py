"""Fault tests: real mosquitto and InfluxDB, central as a child process.

"Every reading once": the counter's stored values are exactly 0..N-1, and every
sample time holds exactly one point. InfluxDB would merge an identical point
written twice, so the second check guards against a reading stored twice under
another series key or time.
"""

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from central.tokens import token_store
from scripts.services import InfluxDB, Mosquitto, free_port
from tests.central.helpers import (
    CentralProcess,
    Publisher,
    central_yaml,
    counter_values,
    points_per_time,
    telemetry,
    wait_for,
)

BATCH = 100


@pytest.fixture
def cleanup() -> Iterator[list]:
    things: list = []
    yield things
    for thing in reversed(things):
        thing.stop()


def _central(tmp_path: Path, name: str, mqtt_url: str, influx_url: str, db: str, **extra):  # type: ignore[no-untyped-def]
    port = free_port()
    config = central_yaml(
        tmp_path / f"{name}.yaml", mqtt_url, influx_url, db, tmp_path / "data", port, **extra
    )
    return CentralProcess(config, port, tmp_path / f"{name}.log")


def _publish_range(pub: Publisher, gateway: str, start: int, stop: int, seq: int) -> int:
    topic = f"pantau/v1/{gateway}/telemetry"
    for first in range(start, stop, BATCH):
        pub.publish(topic, telemetry(gateway, seq, first, min(BATCH, stop - first)))
        seq += 1
    return seq


def _assert_each_once(influx: InfluxDB, db: str, gateway: str, n: int, timeout: float = 30) -> None:
    wait_for(lambda: len(counter_values(influx, db, gateway)) >= n, timeout, f"{n} readings")
    assert counter_values(influx, db, gateway) == list(range(n))
    assert points_per_time(influx, db, gateway, n) == {1}


def test_influxdb_killed_for_10s_loses_nothing(
    tmp_path: Path, broker: Mosquitto, gateway_id: str, cleanup: list
) -> None:
    influx = InfluxDB(tmp_path / "influx").start()
    cleanup.append(influx)
    influx.create_database("faults")
    central = _central(tmp_path, "c", broker.url, influx.url, "faults").start()
    cleanup.append(central)
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    cleanup.append(type("S", (), {"stop": lambda self: pub.close()})())

    seq = _publish_range(pub, gateway_id, 0, 1000, 1)
    _assert_each_once(influx, "faults", gateway_id, 1000)
    wait_for(lambda: central.ready()["ready"], 10, "central ready")

    influx.kill()  # SIGKILL by pid
    down_at = time.monotonic()
    seq = _publish_range(pub, gateway_id, 1000, 3000, seq)
    pub.wait_acked(seq - 1)  # the broker has them all
    wait_for(lambda: not central.ready()["influx"], 8, "readyz to report InfluxDB down")
    assert central.alive
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))

    influx = InfluxDB(tmp_path / "influx", port=influx.port).start()  # same port, same data
    cleanup.append(influx)
    _assert_each_once(influx, "faults", gateway_id, 3000, timeout=60)
    wait_for(lambda: central.ready()["ready"], 10, "central ready again")
    assert "holding messages at the broker" in central.output()


def test_central_killed_mid_batch_loses_nothing(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    central = _central(
        tmp_path, "c", broker.url, influx.url, influx_db, influx={"flush_interval": "300ms"}
    ).start()
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    try:
        seq = 1
        for chunk in range(10):
            seq = _publish_range(pub, gateway_id, chunk * 400, (chunk + 1) * 400, seq)
            time.sleep(0.05)
            if chunk == 4:
                wait_for(lambda: counter_values(influx, influx_db, gateway_id), 10, "a first write")
                central.kill()  # SIGKILL, batches in flight
        pub.wait_acked(seq - 1)
        central.start()  # same client id: the persistent session hands over the rest
        _assert_each_once(influx, influx_db, gateway_id, 4000)
    finally:
        pub.close()
        central.stop()


def test_broker_restart_with_persistence_loses_nothing(
    tmp_path: Path, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    central = _central(tmp_path, "c", broker.url, influx.url, influx_db)
    try:
        central.start()
        wait_for(lambda: central.ready()["broker"], 10, "central connected")
        central.stop()  # away: the broker queues for its persistent session
        pub = Publisher(broker.port, f"pub-{gateway_id}")
        seq = _publish_range(pub, gateway_id, 0, 2000, 1)
        pub.wait_acked(seq - 1)
        pub.close()
        broker.stop()  # SIGTERM: mosquitto saves its persistence file
        broker = Mosquitto(tmp_path / "broker", port=broker.port).start()
        central.start()
        _assert_each_once(influx, influx_db, gateway_id, 2000)
    finally:
        central.stop()
        broker.stop()


def _garbage(rng: random.Random, gateway: str, i: int) -> tuple[str, bytes, str]:
    topic = f"pantau/v1/{gateway}/telemetry"
    kind = i % 5
    if kind == 0:
        return topic, b'{"v":1,"gateway":' + bytes([rng.randrange(256)]) * 5, "bad_json"
    if kind == 1:
        return topic, json.dumps({"v": 1, "gateway": gateway, "seq": -1}).encode(), "schema"
    if kind == 2:  # spoofed: someone else's id in the payload
        return topic, telemetry("gw-victim", 1, 0, 1), "gateway_mismatch"
    if kind == 3:
        return f"pantau/v1/NOT_AN_ID{i}/telemetry", telemetry(gateway, 1, 0, 1), "bad_topic"
    if i % 1000 == 4:
        return topic, b"[" + b" " * (300 * 1024) + b"]", "too_large"
    return topic, b"\xff\xfe not utf-8 " + str(i).encode(), "bad_json"


def test_ten_thousand_bad_payloads_are_counted_and_dead_lettered(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    data = tmp_path / "data"
    store = token_store(data)
    token = store.create("read")[1]
    store.close()
    central = _central(
        tmp_path, "c", broker.url, influx.url, influx_db, dead_letters_max=20_000
    ).start()
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    rng = random.Random(6)
    expected: dict[str, int] = {}
    try:
        seq = 1
        for i in range(10_000):
            topic, payload, reason = _garbage(rng, gateway_id, i)
            expected[reason] = expected.get(reason, 0) + 1
            pub.publish(topic, payload)
            if i % 500 == 0:  # real traffic keeps flowing in between
                seq = _publish_range(pub, gateway_id, (i // 500) * 100, (i // 500 + 1) * 100, seq)
        pub.wait_acked(10_000 + seq - 1, timeout=60)
        _assert_each_once(influx, influx_db, gateway_id, 2000)

        def rejected() -> dict[str, int]:
            text = httpx.get(
                f"{central.url}/metrics", headers={"Authorization": f"Bearer {token}"}
            ).text
            out = {}
            for line in text.splitlines():
                if line.startswith("pantau_messages_rejected_total{"):
                    reason = line.split('"')[1]
                    out[reason] = int(float(line.rsplit(" ", 1)[1]))
            return out

        wait_for(lambda: sum(rejected().values()) >= 10_000, 30, "10,000 rejections counted")
        assert {k: v for k, v in rejected().items() if v} == expected
        with sqlite3.connect(data / "registry.db") as db:
            stored = dict(db.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason"))
        assert stored == expected
        assert central.ready()["ready"]
    finally:
        pub.close()
        central.stop()


def test_influxdb_unreachable_at_start_is_said_and_retried(
    tmp_path: Path, broker: Mosquitto, gateway_id: str
) -> None:
    port = free_port()
    store = token_store(tmp_path / "data")
    headers = {"Authorization": f"Bearer {store.create('read')[1]}"}
    store.close()
    central = _central(tmp_path, "c", broker.url, f"http://127.0.0.1:{port}", "late").start()
    influx = None
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    try:
        wait_for(lambda: "unreachable" in central.output(), 20, "a clear error in the log")
        # the broker connection comes in its own time (a loaded machine): wait for it
        ready = wait_for(
            lambda: (r := central.ready())["broker"] and r, 20, "central on the broker"
        )
        assert ready.pop("holding")["reason"] == "unreachable"
        assert ready == {"ready": False, "broker": True, "influx": False, "overloaded": False}
        seq = _publish_range(pub, gateway_id, 0, 500, 1)
        pub.wait_acked(seq - 1)
        # central got them and holds them: a write tried, held, retried
        wait_for(lambda: _held(central, headers, "unreachable") >= 2, 20, "a held write retried")
        assert central.alive
        influx = InfluxDB(tmp_path / "influx", port=port).start()
        # held writes are retried with a backoff of at most 10 s
        _assert_each_once(influx, "late", gateway_id, 500, timeout=60)  # database created
        wait_for(lambda: central.ready()["ready"], 10, "ready once InfluxDB answers")
    finally:
        pub.close()
        central.stop()
        if influx is not None:
            influx.stop()


def _held(central: CentralProcess, headers: dict[str, str], reason: str) -> float:
    """pantau_write_held_total{reason=...}: InfluxDB writes held and retried."""
    text = httpx.get(f"{central.url}/metrics", headers=headers, timeout=5).text
    sample = f'pantau_write_held_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(sample))


def test_shared_subscription_splits_gateways_between_two_workers(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    tokens = []
    workers = []
    for n in range(2):
        data = tmp_path / f"data{n}"
        store = token_store(data)
        tokens.append(store.create("read")[1])
        store.close()
        port = free_port()
        config = central_yaml(
            tmp_path / f"w{n}.yaml",
            broker.url,
            influx.url,
            influx_db,
            data,
            port,
            mqtt={"shared_group": f"g{gateway_id}", "client_id": f"w{n}-{gateway_id}"},
        )
        workers.append(CentralProcess(config, port, tmp_path / f"w{n}.log"))
    gateways = [f"{gateway_id}-{g}" for g in range(10)]
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    threads = [threading.Thread(target=w.start) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(lambda: all(w.ready()["broker"] for w in workers), 10, "both connected")
        time.sleep(0.5)  # subscriptions in place
        seqs = dict.fromkeys(gateways, 1)
        for first in range(0, 1000, BATCH):
            for gw in gateways:
                seqs[gw] = _publish_range(pub, gw, first, first + BATCH, seqs[gw])
        pub.wait_acked(len(gateways) * 10)
        for gw in gateways:
            _assert_each_once(influx, influx_db, gw, 1000)

        def ingested(n: int) -> int:
            text = httpx.get(
                f"{workers[n].url}/metrics", headers={"Authorization": f"Bearer {tokens[n]}"}
            ).text
            line = next(x for x in text.splitlines() if x.startswith("pantau_readings_ingested"))
            return int(float(line.split()[1]))

        counts = wait_for(
            lambda: (c := [ingested(0), ingested(1)]) and sum(c) == 10_000 and c, 10, "counts"
        )
        assert all(c > 0 for c in counts), counts  # both took a share, none twice
    finally:
        pub.close()
        for w in workers:
            w.stop()
