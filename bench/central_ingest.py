"""End-to-end ingest: simulated gateways → mosquitto → central → InfluxDB, lossless?

    .venv/bin/python -m bench.central_ingest --seconds 20
        [--shapes 200x20,8x500] [--workers 1[,2,...]]
        [--rates 50000,100000,...] [--nodered-rates 50000,75000,...]
        [--publishers 2] [--no-nodered] [--only pantau|nodered]

Each SHAPE is gateways x readings per message. The default measures the fleet's
shape first (200 gateways, each message 20 readings: a river station's handful per
second) and the agent's full batch second (8 gateways x 500 readings per message),
Pantau and Node-RED at both, in the same run.

The simulated gateways are the same for every pipeline: ``--publishers`` processes,
each ONE thread driving its share of the gateways over non-blocking sockets with
hand-built MQTT 3.1.1 packets (``bench._mqttpub``: CONNECT, PUBLISH QoS 1, PUBACK,
PINGREQ, DISCONNECT), one TCP connection and client id ``bench-<gateway>`` per
gateway, at most 64 unacknowledged messages each (the agent's window). In the field
each gateway is its own device, so whatever the harness spends is taken from the
system under test on the same cores; a paho client per gateway (a network thread
each) cost about 3 times as much CPU. A refused CONNECT, a closed connection or an
unexpected packet stops the run with an error rather than losing messages quietly.
Their CPU (``pubs``) counts from the first publish, like the other components'.

In one run, on this machine, with a real mosquitto and InfluxDB 1.x in bench/.work/:

1. mosquitto alone: the publishers send QoS 1 batches as fast as the broker
   acknowledges them; a subscriber process (``bench._mqttpub.Subscriber``, QoS 1,
   every message acknowledged) counts what the broker delivers. The broker's
   pub→sub ceiling.
2. InfluxDB direct: 2 writer processes POST 5,000-line batches of fresh points
   (pre-formatted). InfluxDB's write ceiling on this machine.
3. Pantau central (``python -m central run``, a child process, default settings):
   the publishers (simulating the shape's gateways) publish QoS 1 telemetry shaped
   like the agent's (``wire.encoding``'s telemetry encoder, the shape's readings per
   message) PACED at an offered rate for ``--seconds``, stepping the rate up (``--rates``) until
   central can't keep up or loses anything. ``--workers 1,2`` measures central with
   ``run --workers N`` for each N (one shared subscription; CPU of all its processes).
   Each step's readings have their own time range, so steps are verified independently.
4. Node-RED (``npm install node-red node-red-contrib-influxdb`` in
   bench/.work/nodered): mqtt in (QoS 1) → json → function (split readings into
   points) → join (5,000 points or 0.2 s) → influxdb batch, stepped the same way.

Every reading is unique: gateway g, device ``d<i % 10>``, metric ``count``, value i,
timestamp base + i ms, for i = 0, 1, 2, ... per gateway. After a step, InfluxDB is
read back with one query per step: ``count`` and ``sum`` of the values per
(gateway, device) series, compared with the exact expected count and sum. Lost =
readings missing; duplicates = stored points beyond the expected (InfluxDB
overwrites a point written twice with the same timestamp, so a redelivered batch
is not a duplicate in storage); a series whose count matches but whose sum does
not is reported as corrupted.

Rate of a step = readings stored / (first publish → last reading stored), so a
pipeline that falls behind is charged for its backlog. A step counts as
sustained when it is lossless and the last reading was stored within
``max(2 s, 10 %)`` of the publishing time after publishing ended. CPU is each
component's share of one core over the step, read from /proc.

Prints a table with ratios; the last line is JSON for Pantau (its best sustained
lossless step): ``{"readings_per_s": ..., "lost": ..., "duplicates": ...}``.
"""

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from bench._mqttpub import Fleet, Subscriber
from bench._procstat import CpuMeter
from scripts.services import InfluxDB, Mosquitto, free_port, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
BASE_TS = 1_600_000_000_000  # 2020-09-13, ms
STEP_SPAN = 10 * 86400 * 1000  # each step gets its own 10-day range (its own shard group)
SHAPES = "200x20,8x500"  # gateways x readings per message: the fleet's, the agent's batch
DEVICES = 10
WINDOW = 64  # QoS 1 messages in flight per gateway, the agent's default mqtt.window


def _shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        gateways, _, batch = part.partition("x")
        shapes.append((int(gateways), int(batch)))
    return shapes


def _payload(gateway: str, seq: int, base: int, first: int, n: int) -> bytes:
    # as the agent sends it: compact JSON readings joined into a batch
    readings = b",".join(
        b'{"device":"d%d","metric":"count","value":%d,"ts":%d,"quality":"good","unit":"n"}'
        % (i % DEVICES, i, base + i)
        for i in range(first, first + n)
    )
    head = f'{{"v":1,"gateway":"{gateway}","seq":{seq},"site":"kota-bench","readings":['
    return head.encode() + readings + b"]}"


def _expected(sent: int) -> dict[str, tuple[int, int]]:
    """device → (count, sum of values) for readings 0..sent-1 of one gateway."""
    out = {}
    for d in range(DEVICES):
        values = range(d, sent, DEVICES)
        n = len(values)
        out[f"d{d}"] = (n, n * (values[0] + values[-1]) // 2 if n else 0)
    return out


# publisher and subscriber processes


def _publisher(
    port: int,
    gateways: list[str],
    rate: float | None,
    seconds: float,
    start_at: float,
    base: int,
    batch: int,
    out: Any,
) -> None:
    """Simulated gateways in one process, one thread (bench._mqttpub.Fleet): one MQTT
    connection each, QoS 1, at most WINDOW unacknowledged messages each; messages paced
    at ``rate`` readings/s for the whole process (round-robin over its gateways), or
    unpaced when ``rate`` is None. Puts its result, or {"error": ...}, on ``out``."""
    try:
        with Fleet(port, gateways, window=WINDOW, keepalive=30) as fleet:
            fleet.connect()
            result = _paced(fleet, gateways, rate, seconds, start_at, base, batch)
            fleet.close()
        out.put(result)
    except Exception as exc:  # the parent reports it: a silent publisher would lie
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def _paced(
    fleet: Fleet,
    gateways: list[str],
    rate: float | None,
    seconds: float,
    start_at: float,
    base: int,
    batch: int,
) -> dict[str, Any]:
    sent = dict.fromkeys(gateways, 0)
    seq = dict.fromkeys(gateways, 1)
    while (now := time.monotonic()) < start_at:
        fleet.poll(start_at - now)
    cpu = time.process_time()  # from here on, as the other components' meters
    deadline = start_at + seconds
    interval = batch / rate if rate else 0.0
    k = 0
    behind = 0.0
    while True:
        due = start_at + k * interval
        now = time.monotonic()
        if due >= deadline or now >= deadline:
            break
        if due > now:  # serve the sockets (PUBACKs, pings) until the message is due
            while (now := time.monotonic()) < due:
                fleet.poll(due - now)
        else:
            behind = max(behind, now - due)
            fleet.poll(0)
        gw = gateways[k % len(gateways)]
        fleet.publish(gw, _payload(gw, seq[gw], base, sent[gw], batch))
        seq[gw] += 1
        sent[gw] += batch
        k += 1
    ended = time.monotonic()
    fleet.drain(120)
    return {"sent": sent, "ended": ended, "cpu": time.process_time() - cpu, "behind": behind}


def _subscriber(port: int, got: Any, last: Any, ready: Any) -> None:
    """Counts telemetry messages delivered by the broker (QoS 1, each acknowledged)."""
    with Subscriber(port, "bench-sub") as sub:
        sub.connect()
        sub.subscribe("pantau/v1/+/telemetry")
        ready.set()
        while True:
            if n := len(sub.receive(1.0)):
                got.value += n
                last.value = time.monotonic()


@dataclass
class Publishers:
    port: int
    gateways: list[str]
    processes: int
    rate: float | None
    seconds: float
    base: int
    batch: int
    start_at: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    _thread: threading.Thread | None = None

    def run(self) -> None:
        """Start the publisher processes, publish, collect their results (or the first
        error: a publisher that failed, or died without a word)."""
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        groups = [self.gateways[i :: self.processes] for i in range(self.processes)]
        per_rate = self.rate / self.processes if self.rate else None
        self.start_at = time.monotonic() + 3.0  # time to spawn and connect
        procs = [
            ctx.Process(
                target=_publisher,
                args=(
                    self.port,
                    g,
                    per_rate,
                    self.seconds,
                    self.start_at,
                    self.base,
                    self.batch,
                    queue,
                ),
            )
            for g in groups
            if g
        ]
        for p in procs:
            p.start()
        try:
            self.results = self._collect(queue, procs)
        except Exception as exc:
            self.error = str(exc)
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()

    def _collect(self, queue: Any, procs: list[Any]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.seconds + 180
        while len(results) < len(procs):
            try:
                result = queue.get(timeout=1.0)
            except Empty:
                dead = [p.exitcode for p in procs if p.exitcode is not None]
                if len(dead) == len(procs) or any(dead):
                    raise RuntimeError(
                        f"publisher processes exited ({dead}) without a result"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("publishers did not finish in time") from None
                continue
            if "error" in result:
                raise RuntimeError(f"a publisher process failed: {result['error']}")
            results.append(result)
        return results

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def join(self) -> None:
        """Wait for the publishers; raise if any of them failed."""
        if self._thread is not None:
            self._thread.join()
        if self.error:
            raise RuntimeError(self.error)

    @property
    def sent(self) -> dict[str, int]:
        return {gw: n for r in self.results for gw, n in r["sent"].items()}

    @property
    def ended(self) -> float:
        return max(r["ended"] for r in self.results)

    @property
    def cpu_seconds(self) -> float:
        return sum(r["cpu"] for r in self.results)

    @property
    def behind(self) -> float:
        return max(r["behind"] for r in self.results)


# the measurements


def bench_mosquitto(broker: Mosquitto, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    got, last, ready = ctx.Value("q", 0, lock=False), ctx.Value("d", 0.0, lock=False), ctx.Event()
    sub = ctx.Process(target=_subscriber, args=(broker.port, got, last, ready))
    sub.start()
    try:
        if not ready.wait(15):
            raise RuntimeError("subscriber did not subscribe")
        n, batch = _shapes(args.shapes)[0]
        gateways = [f"mq-{i}" for i in range(n)]
        seconds = min(args.seconds, 10.0)
        pubs = Publishers(broker.port, gateways, args.publishers, None, seconds, BASE_TS, batch)
        meter: CpuMeter | None = None
        pubs.start()
        time.sleep(max(0.0, pubs.start_at - time.monotonic()))
        meter = CpuMeter([broker.proc.pid, sub.pid or 0])  # type: ignore[union-attr]
        pubs.join()
        messages = sum(pubs.sent.values()) // batch
        deadline = time.monotonic() + 60
        while got.value < messages and time.monotonic() < deadline and sub.is_alive():
            time.sleep(0.05)
        if not sub.is_alive():
            raise RuntimeError(f"the subscriber failed (exit code {sub.exitcode}), see above")
        elapsed = (last.value or time.monotonic()) - pubs.start_at
        cpu = meter.share()
    finally:
        sub.terminate()
        sub.join(5)
    return {
        "rate": got.value * batch / elapsed,
        "lost": max(0, messages - got.value) * batch,
        "duplicates": max(0, got.value - messages) * batch,
        "cpu": f"broker {cpu:.0%} (+sub), pubs {pubs.cpu_seconds / elapsed:.0%}",
        "note": f"{seconds:g} s unpaced, {n}x{batch}",
    }


def _influx_writer(url: str, n: int, seconds: float, start_at: float, out: Any) -> None:
    import httpx

    bodies = [
        "\n".join(
            f"readings,device=d{j % DEVICES},gateway=direct-{n} count={j}.0 {BASE_TS + j}"
            for j in range(i, i + 5000)
        ).encode()
        for i in range(0, 5000 * 400, 5000)
    ]  # 2M distinct points, formatted before the clock starts
    count = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        time.sleep(max(0.0, start_at - time.monotonic()))
        deadline = start_at + seconds
        k = 0
        while time.monotonic() < deadline and k < len(bodies):
            resp = client.post(
                "/write", params={"db": "direct", "precision": "ms"}, content=bodies[k]
            )
            if resp.status_code == 204:
                count += 5000
            k += 1
    out.put((count, time.monotonic()))


def bench_influx(influx: InfluxDB, args: argparse.Namespace) -> dict[str, Any]:
    influx.create_database("direct")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    seconds = min(args.seconds, 10.0)
    start_at = time.monotonic() + 8.0  # formatting 2M points per writer first
    procs = [
        ctx.Process(target=_influx_writer, args=(influx.url, n, seconds, start_at, queue))
        for n in range(2)
    ]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    meter = CpuMeter([influx.proc.pid])  # type: ignore[union-attr]
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    elapsed = max(t for _, t in results) - start_at
    return {
        "rate": sum(c for c, _ in results) / elapsed,
        "lost": 0,
        "duplicates": 0,
        "cpu": f"influxd {meter.share():.0%}",
        "note": "2 writers, 5,000 lines/POST",
    }


def _query(influx: InfluxDB, q: str, db: str) -> list[dict[str, Any]]:
    result = influx.query(q, db)["results"][0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB: {result['error']} in {q}")
    return result.get("series") or []


def _count(influx: InfluxDB, db: str, where: str) -> int:
    series = _query(influx, f'SELECT count("count") FROM readings WHERE {where}', db)
    return int(series[0]["values"][0][1]) if series else 0


def _verify(influx: InfluxDB, db: str, where: str, sent: dict[str, int]) -> dict[str, int]:
    """Lost, duplicated and corrupted readings, from one count+sum per series."""
    stored: dict[tuple[str, str], tuple[int, int]] = {}
    for s in _query(
        influx,
        f'SELECT count("count"), sum("count") FROM readings WHERE {where} '
        'GROUP BY "gateway","device"',
        db,
    ):
        _, count, total = s["values"][0]
        stored[(s["tags"]["gateway"], s["tags"]["device"])] = (int(count), int(total))
    lost = duplicates = corrupted = 0
    for gw, n in sent.items():
        for device, (count, total) in _expected(n).items():
            got_count, got_total = stored.pop((gw, device), (0, 0))
            lost += max(0, count - got_count)
            duplicates += max(0, got_count - count)
            if got_count == count and got_total != total:
                corrupted += count
    duplicates += sum(c for c, _ in stored.values())  # series nobody sent
    return {"lost": lost, "duplicates": duplicates, "corrupted": corrupted}


def _wait_stored(influx: InfluxDB, db: str, base: int, where: str, sent: dict[str, int]) -> float:
    """When the last reading was stored; or, if some never are, when the stored count
    last moved (giving up after 10 s without progress). Polls the cheap tail (the last
    2,000 readings of every gateway) every 0.1 s and the whole step every second."""
    total = sum(sent.values())
    tail_from = base + min(sent.values()) - 2000
    tail_total = sum(n - max(0, tail_from - base) for n in sent.values())
    tail = f"time >= {tail_from}ms AND time < {base + STEP_SPAN}ms"
    tail_done = False
    last, changed, checked = -1, time.monotonic(), 0.0
    while True:
        now = time.monotonic()
        if not tail_done and _count(influx, db, tail) >= tail_total:
            tail_done = True
        if tail_done or now - checked >= 1.0:
            checked = now
            points = _count(influx, db, where)
            if points >= total:
                return now
            if points != last:
                last, changed = points, now
            elif now - changed > 10:
                return changed  # lost, or stalled for 10 s
        time.sleep(0.1 if not tail_done else 0.5)


def _step(
    name: str,
    influx: InfluxDB,
    broker: Mosquitto,
    db: str,
    args: argparse.Namespace,
    step: int,
    rate: float,
    pids: list[int],
    shape: tuple[int, int],
) -> dict[str, Any]:
    base = BASE_TS + step * STEP_SPAN
    where = f"time >= {base}ms AND time < {base + STEP_SPAN}ms"
    gateways = [f"{name}{step}-{i}" for i in range(shape[0])]
    pubs = Publishers(broker.port, gateways, args.publishers, rate, args.seconds, base, shape[1])
    pubs.start()
    time.sleep(max(0.0, pubs.start_at - time.monotonic()))
    meter = CpuMeter(pids)
    broker_meter = CpuMeter([broker.proc.pid])  # type: ignore[union-attr]
    influx_meter = CpuMeter([influx.proc.pid])  # type: ignore[union-attr]
    pubs.join()
    total = sum(pubs.sent.values())
    done = _wait_stored(influx, db, base, where, pubs.sent)
    cpu = meter.share(), broker_meter.share(), influx_meter.share()
    check = _verify(influx, db, where, pubs.sent)
    elapsed = done - pubs.start_at
    stored_points = total - check["lost"] + check["duplicates"]
    lag = done - pubs.ended
    sustained = (
        check["lost"] == 0
        and check["duplicates"] == 0
        and check["corrupted"] == 0
        and lag <= max(2.0, 0.1 * args.seconds)
    )
    return {
        "offered": rate,
        "published": total / (pubs.ended - pubs.start_at),
        "rate": stored_points / elapsed,
        "lag": lag,
        "sustained": sustained,
        **check,
        "cpu": (
            f"{name} {cpu[0]:.0%}, broker {cpu[1]:.0%}, influxd {cpu[2]:.0%}, "
            f"pubs {pubs.cpu_seconds / elapsed:.0%}"
        ),
        "note": f"offered {rate:,.0f}/s, last stored {lag:+.1f} s after publishing",
    }


def _stepped(
    name: str,
    influx: InfluxDB,
    broker: Mosquitto,
    db: str,
    args: argparse.Namespace,
    rates: list[float],
    pids: list[int],
    first_step: int,
    shape: tuple[int, int],
) -> list[dict[str, Any]]:
    rows = []
    for k, rate in enumerate(rates):
        print(
            f"  {name} {shape[0]}x{shape[1]}: offering {rate:,.0f} readings/s "
            f"for {args.seconds:g} s",
            file=sys.stderr,
        )
        row = _step(name, influx, broker, db, args, first_step + k, rate, pids, shape)
        print(
            f"    stored {row['rate']:,.0f}/s, lost {row['lost']}, dups {row['duplicates']}, "
            f"lag {row['lag']:.1f} s, {row['cpu']}",
            file=sys.stderr,
        )
        rows.append(row)
        if not row["sustained"] or row["rate"] < 0.9 * rate:
            break
    return rows


BENCH_RULES = """
rules:
  - name: count-high
    kind: threshold
    match: {metric: count}
    above: 1.0e15
    severity: warning
  - name: gateway-offline
    kind: offline
    after: 1h
"""


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


def bench_pantau(
    work: Path,
    influx: InfluxDB,
    broker: Mosquitto,
    args: argparse.Namespace,
    shape: tuple[int, int],
    workers: int,
    first_step: int,
) -> list[dict[str, Any]]:
    port = free_port()
    tag = f"{shape[0]}x{shape[1]}-w{workers}"
    rules = work / "rules.yaml"
    rules.write_text(BENCH_RULES)
    config = work / f"central-{tag}.yaml"
    config.write_text(
        json.dumps(
            {
                "mqtt": {
                    "url": broker.url,
                    "client_id": f"bench-central-{tag}",
                    # only for --workers 2 and more: a worker with a shared group also
                    # runs the alert leader's own feed (every message read twice),
                    # which one central on its own (the default) does not
                    **({"shared_group": f"bench-{tag}"} if workers > 1 else {}),
                },
                "influx": {"url": influx.url, "database": "pantau"},
                "data_dir": str(work / f"central-data-{tag}"),
                "api": {"listen": f"127.0.0.1:{port}"},
                "log": {"level": "WARNING"},
                "rules_file": str(rules),  # the alert engine sees every reading
                # and evaluates it: the readings carry 2020 timestamps (each step its
                # own range), older than the default max_reading_age of 10 minutes,
                # which would let the engine skip every one as a backlog
                "alerts": {"max_reading_age": "36500d"},
            }
        )
    )
    with open(work / f"central-{tag}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central", "run", "-c", str(config), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_port(port, 30, proc)
        time.sleep(1 + workers)  # the other workers connect and subscribe
        pids = [proc.pid, *_children(proc.pid)]
        if len(pids) != workers:
            raise RuntimeError(f"expected {workers} central processes, found {len(pids)}")
        rates = [float(r) for r in args.rates.split(",")]
        return _stepped("pantau", influx, broker, "pantau", args, rates, pids, first_step, shape)
    finally:
        stop_process(proc, timeout=30)
        # central's MQTT sessions are persistent (that is how it loses nothing while
        # stopped): end them, or the broker keeps queueing every later row's messages
        # for them (for the alert feed, every message), which costs later rows
        client_id = f"bench-central-{tag}"
        ids = [client_id, *(f"{client_id}-{i}" for i in range(1, workers))]
        _end_sessions(broker, ids + ([f"bench-{tag}-alerts"] if workers > 1 else []))


def _end_sessions(broker: Mosquitto, client_ids: list[str]) -> None:
    """Take over each persistent session with a clean start and no expiry: the broker
    drops it and what it had queued."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    for client_id in client_ids:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        connected = threading.Event()
        client.on_connect = lambda *_, done=connected: done.set()
        client.connect("127.0.0.1", broker.port, clean_start=True)  # session expiry 0
        client.loop_start()
        if not connected.wait(10):
            raise RuntimeError(f"could not end the MQTT session {client_id}")
        client.disconnect()
        client.loop_stop()


NODE_RED_SPLIT = """
const t = msg.payload;
const gw = t.gateway, site = t.site;
return [t.readings.map(r => ({payload: {measurement: "readings",
  tags: {device: r.device, gateway: gw, site: site},
  fields: {[r.metric]: Number(r.value)}, timestamp: new Date(r.ts)}}))];
"""


def _nodered_flow(broker: Mosquitto, influx: InfluxDB) -> list[dict[str, Any]]:
    return [
        {"id": "b0tab", "type": "tab", "label": "bench"},
        {
            "id": "b1broker",
            "type": "mqtt-broker",
            "name": "bench",
            "broker": "127.0.0.1",
            "port": str(broker.port),
            "clientid": "bench-nodered",
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": True,
        },
        {
            "id": "b2db",
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx.port),
            "protocol": "http",
            "database": "nodered",
            "name": "bench",
            "usetls": False,
            "influxdbVersion": "1.x",
        },
        {
            "id": "b3in",
            "type": "mqtt in",
            "z": "b0tab",
            "topic": "pantau/v1/+/telemetry",
            "qos": "1",
            "datatype": "utf8",
            "broker": "b1broker",
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [["b4json"]],
        },
        {
            "id": "b4json",
            "type": "json",
            "z": "b0tab",
            "property": "payload",
            "action": "obj",
            "pretty": False,
            "wires": [["b5split"]],
        },
        {
            "id": "b5split",
            "type": "function",
            "z": "b0tab",
            "func": NODE_RED_SPLIT,
            "outputs": 1,
            "wires": [["b6join"]],
        },
        {
            "id": "b6join",
            "type": "join",
            "z": "b0tab",
            "mode": "custom",
            "build": "array",
            "property": "payload",
            "propertyType": "msg",
            "key": "topic",
            "joiner": "\\n",
            "joinerType": "str",
            "accumulate": False,
            "timeout": "0.2",
            "count": "5000",
            "reduceRight": False,
            "wires": [["b7out"]],
        },
        {
            "id": "b7out",
            "type": "influxdb batch",
            "z": "b0tab",
            "influxdb": "b2db",
            "precision": "ms",
            "retentionPolicy": "",
            "name": "",
            "wires": [],
        },
    ]


def bench_nodered(
    work: Path,
    influx: InfluxDB,
    broker: Mosquitto,
    args: argparse.Namespace,
    shapes: list[tuple[int, int]],
    first_step: int,
) -> dict[tuple[int, int], list[dict[str, Any]]]:
    red = WORK / "nodered" / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        raise RuntimeError(
            "Node-RED is not installed: run `npm install node-red node-red-contrib-influxdb` "
            "in bench/.work/nodered"
        )
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Node.js) is not installed")
    influx.create_database("nodered")
    user = work / "nodered-user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "node_modules").unlink(missing_ok=True)
    (user / "node_modules").symlink_to(WORK / "nodered" / "node_modules")
    (user / "package.json").write_text(
        json.dumps({"name": "bench", "dependencies": {"node-red-contrib-influxdb": "*"}})
    )
    (user / "flows.json").write_text(json.dumps(_nodered_flow(broker, influx)))
    port = free_port()
    (user / "settings.js").write_text(
        "module.exports = {\n"
        f"  uiPort: {port}, uiHost: '127.0.0.1',\n"
        "  flowFile: 'flows.json', credentialSecret: false,\n"
        "  httpAdminRoot: false, httpNodeRoot: false, disableEditor: true,\n"
        "  logging: {console: {level: 'info', metrics: false, audit: false}},\n"
        "};\n"
    )
    log_path = work / "nodered.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [node, "--max-old-space-size=4096", str(red), "-u", str(user), "-s", "settings.js"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=user,
        )
    try:
        deadline = time.monotonic() + 60
        while "Connected to broker" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Node-RED did not connect its flow; see {log_path}")
            time.sleep(0.2)
        time.sleep(1)
        rates = [float(r) for r in args.nodered_rates.split(",")]
        return {
            shape: _stepped(
                "nodered", influx, broker, "nodered", args, rates, [proc.pid],
                first_step + 20 * k, shape,
            )
            for k, shape in enumerate(shapes)
        }  # fmt: skip
    finally:
        stop_process(proc, timeout=30)


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    good = [r for r in rows if r["sustained"]]
    return max(good, key=lambda r: r["rate"]) if good else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.central_ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=20, help="publishing time per step")
    parser.add_argument(
        "--shapes", default=SHAPES, help="GATEWAYSxREADINGS per message, comma-separated"
    )
    parser.add_argument(
        "--workers", default="1", help="central worker counts to measure (run --workers N)"
    )
    parser.add_argument(
        "--rates",
        default="20000,30000,45000,60000,80000,100000,125000,150000,200000,250000,300000",
        help="offered readings/s for central, stepped up until it can't keep up",
    )
    parser.add_argument(
        "--nodered-rates",
        default="10000,15000,20000,30000,40000,50000,60000,80000,100000,120000",
        help="the same for Node-RED",
    )
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--no-nodered", action="store_true")
    parser.add_argument("--only", choices=["pantau", "nodered"], help="skip the reference rows")
    args = parser.parse_args(argv)
    shapes = _shapes(args.shapes)
    worker_counts = [int(w) for w in args.workers.split(",")]
    work = WORK / f"central-ingest-{int(time.time())}"
    work.mkdir(parents=True)
    broker = Mosquitto(work / "mosquitto").start()
    influx = InfluxDB(work / "influxdb").start()
    influx.create_database("pantau")
    rows: dict[str, dict[str, Any]] = {}
    steps: dict[tuple[str, tuple[int, int]], list[dict[str, Any]]] = {}
    notes = []
    try:
        if not args.only:
            print("mosquitto alone ...", file=sys.stderr)
            rows["mosquitto alone (pub→sub)"] = bench_mosquitto(broker, args)
            print("InfluxDB direct writes ...", file=sys.stderr)
            rows["InfluxDB direct"] = bench_influx(influx, args)
        step = 0
        if args.only in (None, "pantau"):
            for shape in shapes:
                for workers in worker_counts:
                    name = "Pantau central" + (f" ({workers} workers)" if workers > 1 else "")
                    print(f"{name} at {shape[0]}x{shape[1]} ...", file=sys.stderr)
                    steps[(name, shape)] = bench_pantau(
                        work, influx, broker, args, shape, workers, step
                    )
                    step += 20
        if args.only == "nodered" or (not args.no_nodered and not args.only):
            print("Node-RED ...", file=sys.stderr)
            try:
                for shape, found in bench_nodered(work, influx, broker, args, shapes, step).items():
                    steps[("Node-RED", shape)] = found
            except Exception as exc:  # report, don't hide the rest
                notes.append(f"Node-RED not measured: {exc}")
    finally:
        broker.stop()
        influx.stop()
    print(f"\ncentral_ingest, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs")
    summary: dict[str, Any] = {}
    for shape in shapes:
        label = f"{shape[0]} gateways x {shape[1]} readings/message"
        pantau = _best(steps.get(("Pantau central", shape), []))
        print(f"\n{label}")
        print(
            f"{'pipeline':<40} {'readings/s':>11} {'lost':>8} {'dups':>6} {'Pantau is':>9}  "
            "CPU (1 core = 100%)"
        )
        shown = dict(rows) if shape == shapes[0] else {}
        for (name, at), step_rows in steps.items():
            if at != shape:
                continue
            best = _best(step_rows)
            for row in step_rows:
                tag = "best" if row is best else ("ok" if row["sustained"] else "FAILS")
                shown[f"{name} @{row['offered'] / 1000:g}k [{tag}]"] = row
        for name, row in shown.items():
            ratio = f"{pantau['rate'] / row['rate']:.2f}x" if pantau and row["rate"] else "-"
            if name.startswith("Pantau"):
                ratio = "-"
            print(
                f"{name:<40} {row['rate']:>11,.0f} {row['lost']:>8} {row['duplicates']:>6} "
                f"{ratio:>9}  {row['cpu']}; {row['note']}"
            )
        nodered = _best(steps.get(("Node-RED", shape), []))
        if pantau and nodered:
            print(
                f"Pantau best sustained lossless {pantau['rate']:,.0f}/s vs Node-RED "
                f"{nodered['rate']:,.0f}/s: {pantau['rate'] / nodered['rate']:.2f}x"
            )
        if pantau is None:  # nothing sustained: the best lossless step, else the first
            tried = steps.get(("Pantau central", shape), [])
            lossless = [r for r in tried if r["lost"] == 0 and r["duplicates"] == 0]
            pantau = max(lossless, key=lambda r: r["rate"]) if lossless else next(iter(tried), None)
        summary[f"{shape[0]}x{shape[1]}"] = {
            "readings_per_s": round(pantau["rate"]) if pantau else 0,
            "lost": pantau["lost"] if pantau else -1,
            "duplicates": pantau["duplicates"] if pantau else -1,
            "nodered_readings_per_s": round(nodered["rate"]) if nodered else None,
        }
    for note in notes:
        print(note)
    print(f"(work dir {work})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
