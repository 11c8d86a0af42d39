"""Several central workers on one shared state: real PostgreSQL, mosquitto (an MQTT 5
shared subscription) and InfluxDB, each worker a child process.

The alert leader is SIGKILLed mid-stream and restarted: every reading is still stored
exactly once (count and sum), another worker takes over alerting within 15 s, and
every incident is notified exactly once. ``--workers N`` starts N ingest processes
behind one API."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from scripts.services import InfluxDB, Mosquitto, free_port, stop_process
from tests.central.alert_helpers import SECRET, Receiver
from tests.central.helpers import CentralProcess, Publisher, central_yaml, wait_for

RULES = """
rules:
  - name: river-high
    kind: threshold
    match: {metric: level}
    above: 100
    clear_below: 90
    severity: critical
"""

READINGS = 20  # per message: the fleet's shape


def message(gateway: str, seq: int, t0: int, first: int, values: list[float]) -> bytes:
    readings = ",".join(
        f'{{"device":"river-1","metric":"level","value":{v},"ts":{t0 + first + i},'
        '"quality":"good"}'
        for i, v in enumerate(values)
    )
    return f'{{"v":1,"gateway":"{gateway}","seq":{seq},"readings":[{readings}]}}'.encode()


def values_of(gateway_index: int, m: int, fire_at: int) -> list[float]:
    """Low (0..49) before message ``fire_at``, high (150..169) from it on: one incident."""
    base = 150.0 if m >= fire_at else 0.0
    return [base + (m * READINGS + r) % (20 if base else 50) for r in range(READINGS)]


def leader_flags(workers: list[CentralProcess], token: str) -> list[bool]:
    flags = []
    for worker in workers:
        try:
            text = httpx.get(
                f"{worker.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=2
            ).text
        except httpx.HTTPError:
            flags.append(False)
            continue
        line = next(x for x in text.splitlines() if x.startswith("pantau_alerts_leader "))
        flags.append(float(line.split()[1]) == 1.0)
    return flags


def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


TELEMETRY = ("pantau_messages_received_total", (("kind", "telemetry"),))
READINGS_INGESTED = ("pantau_readings_ingested_total", ())


def telemetry_by_process(metrics_dir: Path) -> list[float]:
    """Telemetry messages each worker process counted, read from its own file."""
    counts = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        for family in MultiProcessCollector.merge([str(path)]):
            counts += [
                s.value
                for s in family.samples
                if s.name == TELEMETRY[0] and s.labels.get("kind") == "telemetry"
            ]
    return counts


def influx_totals(influx: InfluxDB, db: str, prefix: str) -> tuple[int, float]:
    rows = influx.values(
        f'SELECT COUNT("level"), SUM("level") FROM readings WHERE gateway =~ /^{prefix}-/',
        db,
    )
    return (int(rows[0][1]), float(rows[0][2])) if rows else (0, 0.0)


def test_leader_killed_mid_stream_every_reading_once_every_incident_notified_once(
    tmp_path: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    influx_db: str,
    pg_url: str,
    receiver: Receiver,
    gateway_id: str,
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    group = f"g-{gateway_id}"
    workers = []
    for n in range(3):
        port = free_port()
        config = central_yaml(
            tmp_path / f"w{n}.yaml",
            broker.url,
            influx.url,
            influx_db,
            tmp_path / f"data{n}",  # own data_dir: the shared state is in PostgreSQL
            port,
            mqtt={"shared_group": group, "client_id": f"w{n}-{gateway_id}"},
            rules_file=str(tmp_path / "rules.yaml"),
            webhooks=[{"name": "ops", "url": receiver.url, "secret": SECRET, "timeout": "2s"}],
            alerts={"evaluation_interval": "200ms"},
        )
        doc = json.loads(config.read_text())
        doc["database"] = {"url": pg_url}
        config.write_text(json.dumps(doc))
        workers.append(CentralProcess(config, port, tmp_path / f"w{n}.log"))
    starting = [threading.Thread(target=w.start) for w in workers]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    pub = Publisher(broker.port, f"pub-{gateway_id}")
    try:
        # a token made with one worker's config works on every worker
        made = subprocess.run(
            [sys.executable, "-m", "central", "token", "create", "--role", "read",
             "-c", str(workers[1].config)],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        token = made.stdout.split()[-1]
        flags = wait_for(
            lambda: (f := leader_flags(workers, token)) and sum(f) == 1 and f, 15, "one leader"
        )
        # /readyz says broker: true once the broker acknowledged the worker's subscriptions
        wait_for(lambda: all(w.ready()["broker"] for w in workers), 15, "every worker subscribed")
        leader = workers[flags.index(True)]
        wait_for(
            lambda: "alert feed subscribed" in leader.log.read_text(errors="replace"),
            15,
            "the leader's feed subscribed (its SUBACK)",
        )

        gateways = [f"{gateway_id}-{g}" for g in range(6)]
        per_gateway = 40  # messages; 6 x 40 x 20 = 4,800 readings
        # gateways 0-2 fire before the kill, 3-5 after the takeover
        fire_at = {gw: (5 if g < 3 else 32) for g, gw in enumerate(gateways)}
        t0 = int(time.time() * 1000) - 60_000
        expected_sum = 0.0
        killed = flags.index(True)
        took_over = 0.0
        for m in range(per_gateway):
            for g, gw in enumerate(gateways):
                values = values_of(g, m, fire_at[gw])
                expected_sum += sum(values)
                payload = message(gw, m + 1, t0, m * READINGS, values)
                pub.publish(f"pantau/v1/{gw}/telemetry", payload)
            time.sleep(0.05)
            if m == 10:
                receiver.wait(3, timeout=15)  # gateways 0-2 notified by the first leader
            if m == 20:
                workers[killed].kill()  # mid-stream, with messages in flight
                killed_at = time.monotonic()
                others = [w for i, w in enumerate(workers) if i != killed]
                wait_for(lambda o=others: any(leader_flags(o, token)), 15, "a new leader")
                took_over = time.monotonic() - killed_at
                workers[killed].start()  # resumes its persistent session
        pub.wait_acked(len(gateways) * per_gateway)

        expected = (len(gateways) * per_gateway * READINGS, expected_sum)
        wait_for(
            lambda: influx_totals(influx, influx_db, gateway_id) == expected,
            30,
            f"{expected} (count, sum) in InfluxDB",
        )
        receiver.wait(6, timeout=20)
        time.sleep(2)  # room for a duplicate to show up
        firing = sorted(
            r.json["alerts"][0]["labels"]["gateway"]
            for r in receiver.received
            if r.json["status"] == "firing"
        )
        assert firing == sorted(gateways), firing  # each incident once, none twice
        print(f"alerting taken over {took_over:.1f}s after the SIGKILL")
        assert took_over < 15
        assert sum(leader_flags(workers, token)) == 1
        # one process each: metrics in memory as ever, no multiprocess files
        assert ("process_cpu_seconds_total", ()) in scrape(workers[0].url, token)
        assert not any((tmp_path / f"data{n}" / "prometheus").exists() for n in range(3))
    finally:
        pub.close()
        for w in workers:
            w.stop()
        for w in workers:
            if w.alive or "Traceback" in w.output():
                print(w.output())


def test_workers_option_runs_n_ingest_processes_behind_one_api_and_scales_down(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, influx_db: str, gateway_id: str
) -> None:
    port = free_port()
    config = central_yaml(
        tmp_path / "central.yaml",
        broker.url,
        influx.url,
        influx_db,
        tmp_path / "data",
        port,
        mqtt={"client_id": f"c-{gateway_id}", "shared_group": f"g-{gateway_id}"},
    )
    log = tmp_path / "central.log"
    url = f"http://127.0.0.1:{port}"
    made = subprocess.run(
        [sys.executable, "-m", "central", "token", "create", "--role", "read", "-c", str(config)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    token = made.stdout.split()[-1]

    def metrics_count(expected: tuple[int, float]) -> None:
        """Worker 0's /metrics counts every worker's messages and readings."""
        messages = expected[0] // READINGS
        want = {
            TELEMETRY: messages,
            READINGS_INGESTED: expected[0],
            # live gauges, each worker's copied every 2 s: summed (pending points) or
            # the highest (the alert leader flag) over the workers running
            ("pantau_pending_points", ()): 0,
            ("pantau_alerts_leader", ()): 1,
        }
        got = wait_for(
            lambda: (m := scrape(url, token)) and all(m.get(k) == v for k, v in want.items()) and m,
            10,
            f"/metrics to show {want}",
        )
        assert ("process_cpu_seconds_total", ()) in got  # worker 0's own process
        assert any(name == "python_info" for name, _ in got)
        shares = telemetry_by_process(tmp_path / "data" / "prometheus")
        assert sum(shares) == messages
        assert len([n for n in shares if n]) >= 2, shares  # not worker 0's share alone

    pub = Publisher(broker.port, f"pub-{gateway_id}")
    t0 = int(time.time() * 1000) - 60_000

    def publish(part: str) -> tuple[int, float]:
        gateways = [f"{gateway_id}-{part}-{g}" for g in range(12)]
        for m in range(10):
            for gw in gateways:
                values = [float(m * READINGS + r) for r in range(READINGS)]
                pub.publish(f"pantau/v1/{gw}/telemetry", message(gw, m + 1, t0, m * 20, values))
        return 2400, sum(float(v) for v in range(200)) * len(gateways)

    def start(workers: int) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "central", "run", "--workers", str(workers),
                 "-c", str(config)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def children(proc: subprocess.Popen[bytes]) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in found.stdout.split()]

    proc = start(3)
    try:
        wait_for(lambda: len(children(proc)) == 2, 20, "two more workers")
        wait_for(lambda: _ready(url), 20, "the API to be ready")
        # each worker logs this once the broker acknowledged its shared subscriptions
        wait_for(
            lambda: (
                log.read_text(errors="replace").count(f"subscribed to $share/g-{gateway_id}/") == 3
            ),
            20,
            "all three workers subscribed",
        )
        expected = publish("a")
        pub.wait_acked(120)
        wait_for(
            lambda: influx_totals(influx, influx_db, f"{gateway_id}-a") == expected,
            30,
            "every reading once",
        )
        metrics_count(expected)
        kids = children(proc)
        states = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in kids}
        assert sorted(a[a.index(b"--worker-index") + 1] for a in states.values()) == [b"1", b"2"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0
        wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in kids), 10, "exits")

        # two workers from now on: worker 2 retires (its session would keep a share)
        proc = start(2)
        wait_for(lambda: _ready(url), 20, "the API to be ready again")
        wait_for(lambda: "worker 2 retired" in log.read_text(), 30, "worker 2 to retire")
        expected = publish("b")
        pub.wait_acked(240)
        wait_for(
            lambda: influx_totals(influx, influx_db, f"{gateway_id}-b") == expected,
            30,
            "every reading once with two workers",
        )
        metrics_count(expected)  # counted from 0 again: the files are new at each start
        assert len(children(proc)) == 1
    finally:
        pub.close()
        stop_process(proc, timeout=30)
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]


def _ready(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/readyz", timeout=2).json()["ready"])
    except (httpx.HTTPError, ValueError):
        return False
