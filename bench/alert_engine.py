"""The alert engine's cost per reading, driven as central drives it (no broker, no I/O).

    .venv/bin/python -m bench.alert_engine [--scenarios live,ingest,river]
        [--gateways 200] [--devices 10] [--per-message 20] [--messages 20000] [--repeat 5]

One ``AlertService`` (SQLite alert store in a temp dir, no webhooks) per run. As in
``pantau-central run``, every decoded ``wire.Telemetry`` message is handed to
``AlertService.observe`` (ingest's observer call) and the engine applies what is
queued; ``run_once()`` (queued messages, then the periodic checks) runs once per
``--chunk`` messages, about one ``alerts.evaluation_interval`` at 80k readings/s.
Births (``wire.State``) announce each gateway's devices and profiles first; one
untimed pass fills the engine's caches and states, then the timed pass sends fresh
messages (later sample times). Nothing crosses a threshold: the steady state.

Scenarios (200 gateways x 20 readings per message, ``--devices`` devices each):

- ``live``: bench/central_ingest's rules (BENCH_RULES: a threshold on ``count``
  matching every reading, never crossed, plus an offline rule) over fresh readings,
  as a live fleet sends them: the threshold rule evaluates every reading.
- ``ingest``: the same rules over bench/central_ingest's own readings, whose sample
  times are in 2020: with the default ``alerts.max_reading_age`` a backlog no rule
  evaluates (bench/central_ingest now raises that setting, so there the engine costs
  what ``live`` measures).
- ``river``: the shipped deploy/rules.example.yaml (levels, threshold, rate, stale,
  quality, offline rules) over a mixed fleet: river level stations (``level_m``,
  ``signal_db``), tower UPSes (``mains_ok``, ``battery_charge_pct``), garbage bins,
  a tapping box and a traffic counter per gateway; one message every 10 s per gateway
  in sample time (a ``rate`` window of 10 minutes holds 60 points per series).

``--paced R`` offers the timed messages at R readings/s from the main thread to the
service's own engine thread, started as central starts it (``AlertService.start``), and
reports the CPU of that thread alone (/proc, 10 ms ticks: use runs of seconds), wake-ups
and hand-overs included.

``--births-every N`` adds a birth of the next gateway before every N-th timed message,
as when gateways reconnect after a broker restart.

Prints, per scenario, the CPU time of this process per reading (both threads of the
service included: there is only this one) and readings/s, each repeat and the median,
and wall-clock readings/s. The machine may be shared: compare runs made in the same
minutes, and trust the CPU figure more than the wall-clock one. The last line is JSON.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wire
from bench.central_ingest import BASE_TS, BENCH_RULES
from central.alerts.service import AlertService
from central.config import CentralConfig
from wire.structs import convert

ROOT = Path(__file__).resolve().parents[1]


# river: (device, profile, [(metric, value at step n)]); two readings per device
RIVER_DEVICES: list[tuple[str, str, list[tuple[str, Any]]]] = [
    ("sungai-ciliwung-1", "river/radar-level-abcd", [("level_m", 1.40), ("signal_db", -52.0)]),
    ("sungai-ciliwung-2", "river/radar-level-abcd", [("level_m", 1.10), ("signal_db", -55.0)]),
    ("pos-level-3", "river/radar-level-cdab", [("level_m", 0.90), ("signal_db", -60.0)]),
    ("pos-level-4", "river/generic-level-float32", [("level_m", 1.70), ("signal_db", -49.0)]),
    ("ups-1", "network/tower-power-ups", [("mains_ok", True), ("battery_charge_pct", 98.0)]),
    ("ups-2", "network/tower-power-ups", [("mains_ok", True), ("battery_charge_pct", 100.0)]),
    ("bin-1", "garbage/ultrasonic-bin-modbus", [("fill_pct", 35.0), ("distance_cm", 80.0)]),
    ("bin-2", "garbage/ultrasonic-bin-modbus", [("fill_pct", 60.0), ("distance_cm", 45.0)]),
    ("tapping-1", "tapping-box/escpos-generic", [("receipts", 3), ("bytes_read", 1200)]),
    ("counter-1", "traffic/vehicle-counter-4lane", [("vehicles_moved", 4), ("lane1", 1000)]),
]


@dataclass
class Scenario:
    name: str
    rules: str
    births: list[wire.State]
    warm: list[tuple[str, Any]]  # (kind, message) as ingest hands them over
    timed: list[tuple[str, Any]]


def _fleet(args: argparse.Namespace, start: float, river: bool, old: bool) -> Scenario:
    """Births, then warm-up and timed telemetry (sample times rising per gateway)."""
    gateways = [f"gw-{g:04d}" for g in range(args.gateways)]
    devices = args.devices
    step_ms = 10_000 if river else 1_000  # sample time between two messages of a gateway
    births = []
    for g, gateway in enumerate(gateways):
        if river:
            infos = [
                wire.DeviceInfo(id=d, profile=p, driver="modbus")
                for d, p, _ in RIVER_DEVICES[:devices]
            ]
        else:
            infos = [
                wire.DeviceInfo(id=f"d{i}", profile="simulated/counter", driver="simulated")
                for i in range(devices)
            ]
        births.append(
            wire.State(
                gateway=gateway,
                seq=0,
                status="online",
                ts=int(start * 1000),
                site=f"kota-{g % 5}",
                devices=infos,
            )
        )
    total = 2 * args.messages
    messages: list[wire.Telemetry] = []
    counters = dict.fromkeys(gateways, 0)
    # fresh: from 5 minutes ago on (later ones lie ahead of the clock, still fresh)
    base = BASE_TS if old else int(start * 1000) - 300_000
    for n in range(total):
        gateway = gateways[n % len(gateways)]
        k = counters[gateway]
        counters[gateway] = k + 1
        readings = []
        for i in range(args.per_message):
            if river:
                device, _, metrics = RIVER_DEVICES[(i // 2) % devices]
                metric, value = metrics[i % 2]
                if isinstance(value, float):
                    value = round(value + 0.01 * ((k + i) % 7), 3)  # wobbles, never crosses
                elif not isinstance(value, bool):
                    value = value + k
                ts = base + k * step_ms
            else:
                device, metric = f"d{i % devices}", "count"
                value = k * args.per_message + i
                ts = base + k * step_ms + i
            readings.append(
                wire.Reading(device=device, metric=metric, value=value, ts=ts, unit="n")
            )
        messages.append(
            wire.Telemetry(gateway=gateway, seq=k + 1, site=f"kota-{n % 5}", readings=readings)
        )
    name = "river" if river else ("ingest" if old else "live")
    rules = (ROOT / "deploy" / "rules.example.yaml").read_text() if river else BENCH_RULES
    half = args.messages
    warm = [("telemetry", m) for m in messages[:half]]
    timed: list[tuple[str, Any]] = []
    for n, message in enumerate(messages[half:]):
        if args.births_every and n % args.births_every == 0:  # a gateway reconnects
            timed.append(("state", births[(n // args.births_every) % len(births)]))
        timed.append(("telemetry", message))
    return Scenario(name, rules, births, warm, timed)


def _service(work: Path, rules: str) -> AlertService:
    (work / "rules.yaml").write_text(rules)
    config = convert(
        {
            "influx": {"url": "http://127.0.0.1:9", "database": "unused"},
            "data_dir": str(work / "data"),
            "rules_file": str(work / "rules.yaml"),
            "log": {"level": "WARNING"},
        },
        CentralConfig,
    )
    return AlertService(config)


def _feed(service: AlertService, messages: list[tuple[str, Any]], chunk: int) -> None:
    observe = service.observe
    for i in range(0, len(messages), chunk):
        for kind, message in messages[i : i + chunk]:
            observe(kind, message)
        service.run_once()


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _paced(service: AlertService, messages: list[tuple[str, Any]], rate: float) -> float:
    """Observe ``messages`` from this thread at ``rate`` readings/s while the service's
    own engine thread runs, as ingest's network thread does; the engine thread's CPU
    seconds until it has applied them all."""
    assert service._thread is not None and service._thread.native_id is not None
    tid = service._thread.native_id
    per_message = max(1, len(messages[0][1].readings)) if messages else 1
    cpu = _thread_cpu(tid)
    start = time.perf_counter()
    sent = 0
    while sent < len(messages):
        due = min(len(messages), int((time.perf_counter() - start) * rate / per_message) + 1)
        for kind, message in messages[sent:due]:
            service.observe(kind, message)
        sent = due
        time.sleep(0.001)
    while not service._queue.empty():
        time.sleep(0.01)
    with service._lock:  # the engine thread is done with the last one
        return _thread_cpu(tid) - cpu


def _run(scenario: Scenario, chunk: int, rate: float = 0.0) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the timed pass in a fresh service; with ``rate``,
    paced, the CPU of the service's engine thread alone."""
    with tempfile.TemporaryDirectory(prefix="pantau-alert-bench-") as tmp:
        service = _service(Path(tmp), scenario.rules)
        try:
            for birth in scenario.births:
                service.observe("state", birth)
            service.run_once()
            _feed(service, scenario.warm, chunk)
            if rate:
                service.start()
                wall = time.perf_counter()
                cpu = _paced(service, scenario.timed, rate)
                wall = time.perf_counter() - wall
                service._stop.set()
            else:
                cpu, wall = time.process_time(), time.perf_counter()
                _feed(service, scenario.timed, chunk)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            fired = service.incidents.firing()
            if fired:
                raise SystemExit(f"{scenario.name}: {len(fired)} alert(s) fired: bench broken")
        finally:
            if service._thread is not None:
                service.stop()
            else:
                service.outbox.stop()
                service.store.close()
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_engine", description=__doc__)
    parser.add_argument("--scenarios", default="live,ingest,river")
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--per-message", type=int, default=20)
    parser.add_argument("--messages", type=int, default=20_000, help="timed messages per run")
    parser.add_argument("--chunk", type=int, default=4_000, help="messages per run_once()")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        metavar="READINGS_PER_S",
        help="offer the timed messages at this rate to the service's own engine thread "
        "(started as central starts it) and report that thread's CPU",
    )
    parser.add_argument(
        "--births-every",
        type=int,
        default=0,
        metavar="N",
        help="a birth (a gateway reconnecting) before every N-th timed message",
    )
    args = parser.parse_args(argv)
    if args.devices > len(RIVER_DEVICES):
        parser.error(f"--devices: at most {len(RIVER_DEVICES)}")
    results: dict[str, Any] = {}
    for name in args.scenarios.split(","):
        if name not in ("live", "ingest", "river"):
            parser.error(f"--scenarios: unknown scenario {name!r}")
        scenario = _fleet(args, time.time(), river=name == "river", old=name == "ingest")
        readings = sum(len(m.readings) for kind, m in scenario.timed if kind == "telemetry")
        messages = sum(kind == "telemetry" for kind, _ in scenario.timed)
        cpus, walls = [], []
        for _ in range(args.repeat):
            cpu, wall = _run(scenario, args.chunk, args.paced)
            cpus.append(cpu / readings * 1e6)
            walls.append(readings / wall)
        median = statistics.median(cpus)
        print(
            f"{name:7s} {readings} readings in {messages} messages x {args.repeat}: "
            f"median {median:.3f} us CPU/reading = {1e6 / median:,.0f} readings/s per core "
            f"(runs: {', '.join(f'{c:.3f}' for c in cpus)} us); "
            f"wall median {statistics.median(walls):,.0f} readings/s"
        )
        results[name] = {
            "us_per_reading": round(median, 4),
            "readings_per_cpu_s": round(1e6 / median),
            "wall_readings_per_s": round(statistics.median(walls)),
            "runs_us": [round(c, 4) for c in cpus],
        }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
