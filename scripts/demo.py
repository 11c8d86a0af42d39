"""``make demo``: the whole mission on this machine, everything in ``.run/demo/``.

Starts mosquitto and InfluxDB on free loopback ports, a webhook receiver, the
simulated field devices (``scripts/demo_devices.py``: a river level sensor over
Modbus TCP, a POS printing receipts through serial ports, a city application that
goes down and up), central with the demo's alert rules, and two agents reading
those devices with the shipped profiles. It registers the gateways with their
sites, creates a read token, prints the dashboard's address, then follows the
receiver until the river's Siaga incident arrives there.

    python -m scripts.demo up [--speed 1] [--dir .run/demo] [--no-follow]
    python -m scripts.demo down [--dir .run/demo]

``down`` stops every process ``up`` started (their pids are in ``pids.json``).
"""

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.services import InfluxDB, Mosquitto, ServiceError, free_port

DEFAULT_DIR = Path(".run/demo")
DATABASE = "pantau"
STOP_ORDER = (
    "agent-sungai",
    "agent-resto",
    "central",
    "devices",
    "receiver",
    "influxd",
    "mosquitto",
)

GATEWAYS = (
    {
        "id": "gw-demo-sungai",
        "site": "sungai-batu-merah",
        "name": "Jembatan Batu Merah (river station and city network checks)",
        "location": {"lat": -3.6866, "lon": 128.1967},
        "timezone": "WIT",
    },
    {
        "id": "gw-demo-resto",
        "site": "resto-pasar-mardika",
        "name": "Rumah Makan Pasar Mardika (tapping box)",
        "location": {"lat": -3.6920, "lon": 128.1850},
        "timezone": "WIT",
    },
)

AGENT_SUNGAI = """\
gateway:
  id: gw-demo-sungai
  site: sungai-batu-merah
mqtt:
  url: {mqtt_url}
  username: gw-demo-sungai
  password: demo-secret
buffer:
  path: {run}/agent-sungai-buffer.db
health:
  interval: {health}
devices:
  - id: batu-merah-level          # radar level sensor, Modbus TCP
    profile: river/radar-level-mm
    interval: {river_interval}
    connection: {{transport: tcp, host: 127.0.0.1, port: {modbus_port}, unit: 1}}
  - id: batu-merah-rain           # tipping-bucket rain gauge, same Modbus TCP port, unit 2
    profile: river/rain-tipping-bucket
    interval: {rain_interval}
    connection: {{transport: tcp, host: 127.0.0.1, port: {modbus_port}, unit: 2}}
  - id: lapor-kota-http           # the city's complaints app
    profile: network/http
    interval: {net_interval}
    timeout: 1s
    connection: {{url: "http://127.0.0.1:{app_port}/health", body_regex: '"status": "ok"'}}
  - id: lapor-kota-port
    profile: network/tcp-port
    interval: {net_interval}
    timeout: 1s
    connection: {{host: 127.0.0.1, port: {app_port}}}
"""

AGENT_RESTO = """\
gateway:
  id: gw-demo-resto
  site: resto-pasar-mardika
mqtt:
  url: {mqtt_url}
  username: gw-demo-resto
  password: demo-secret
buffer:
  path: {run}/agent-resto-buffer.db
health:
  interval: {health}
devices:
  - id: kasir-1                   # tapping box between the POS and its receipt printer
    profile: tapping-box/escpos-generic
    connection:
      transport: serial
      pos_port: {pos_port}
      printer_port: {printer_port}
      baudrate: 9600
"""

CENTRAL_YAML = """\
mqtt:
  url: {mqtt_url}
  username: pantau-central
  password: demo-secret
influx:
  url: {influx_url}
  api: v1
  database: {database}
data_dir: {run}/central-data
offline_after: 1m
api:
  listen: 127.0.0.1:{api_port}
  external_url: http://127.0.0.1:{api_port}
rules_file: rules.yaml
webhooks:
  - name: demo-receiver
    url: http://127.0.0.1:{receiver_port}/hook
    secret_file: {run}/webhook.secret
    timeout: 5s
alerts:
  evaluation_interval: 1s
  max_backoff: 10s
"""

RULES_YAML = """\
# The demo's alert rules (see docs/alerts.md); the durations are scaled by --speed.
rules:
  - name: river-siaga
    kind: levels
    match: {{profile: "river/*", metric: level_cm}}
    levels: {{waspada: 250, siaga: 300, awas: 350}}
    severities: {{waspada: warning, siaga: critical, awas: critical}}
    hysteresis: 5
    for: {river_for}
    annotations:
      summary: "{{device}} at {{site}}: {{level}} ({{value:.0f}} cm, mark {{threshold}} cm)"
  - name: city-app-down
    kind: threshold
    match: {{profile: "network/*", metric: up}}
    below: 1
    for: {app_for}
    severity: critical
    annotations: {{summary: "{{device}} at {{site}} is down"}}
  - name: gateway-offline
    kind: offline
    after: 1m
    severity: warning
    annotations: {{summary: "gateway {{gateway}} at {{site}}: {{reason}}"}}
"""


class DemoError(RuntimeError):
    pass


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (to tell it from a later process with its pid),
    or None when no such process runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else fields[19]


class Demo:
    def __init__(self, run: Path, speed: float = 1.0, out: Any = sys.stdout) -> None:
        self.run = run.resolve()
        self.speed = speed
        self.out = out
        self.pids: dict[str, dict[str, Any]] = {}

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # processes

    def _record(self, name: str, pid: int) -> None:
        self.pids[name] = {"pid": pid, "start": _start_time(pid)}
        (self.run / "pids.json").write_text(json.dumps(self.pids, indent=2))

    def spawn(self, name: str, argv: list[str]) -> None:
        with open(self.run / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _repo_path()},
            )
        self._record(name, proc.pid)

    def alive(self, name: str) -> bool:
        entry = self.pids.get(name)
        return entry is not None and _start_time(entry["pid"]) == entry["start"]

    def wait(self, what: str, check: Callable[[], Any], timeout: float, name: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name and not self.alive(name):
                raise DemoError(f"{name} exited; see {self.run / (name + '.log')}")
            try:
                result = check()
            except (OSError, ValueError, KeyError, ServiceError):
                result = None
            if result:
                return result
            time.sleep(0.2)
        where = f"; see {self.run / (name + '.log')}" if name else ""
        raise DemoError(f"{what} not ready after {timeout:.0f} s{where}")

    # up

    def up(self, follow: bool = True) -> int:
        self.run.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        speed = self.speed
        try:
            broker = Mosquitto(self.run / "mosquitto").start()
            assert broker.proc is not None
            self._record("mosquitto", broker.proc.pid)
            influx = InfluxDB(self.run / "influxdb").start()
            assert influx.proc is not None
            self._record("influxd", influx.proc.pid)
        except ServiceError as exc:
            raise DemoError(str(exc)) from None

        secret = self.run / "webhook.secret"
        secret.write_text(secrets.token_urlsafe(24))
        secret.chmod(0o600)
        receiver_port = free_port()
        self.spawn(
            "receiver",
            [
                python, "-m", "scripts.webhook_receiver", "--port", str(receiver_port),
                "--secret-file", str(secret), "--record", str(self.run / "webhooks.jsonl"),
            ],
        )  # fmt: skip
        devices_state = self.run / "devices.json"
        devices_state.unlink(missing_ok=True)
        self.spawn(
            "devices",
            [
                python,
                "-m",
                "scripts.demo_devices",
                "--state",
                str(devices_state),
                "--speed",
                str(speed),
            ],
        )
        devices = self.wait(
            "simulated devices",
            lambda: devices_state.exists() and json.loads(devices_state.read_text()),
            15,
            "devices",
        )

        api_port = free_port()
        values = {
            "mqtt_url": broker.url,
            "influx_url": influx.url,
            "database": DATABASE,
            "run": self.run,
            "api_port": api_port,
            "receiver_port": receiver_port,
            "health": _duration(10 / speed),
            "river_interval": _duration(max(0.5, 2 / speed)),
            "rain_interval": _duration(max(1, 30 / speed)),
            "net_interval": _duration(max(0.5, 2 / speed)),
            "river_for": _duration(5 / speed),
            "app_for": _duration(4 / speed),
            **devices,
        }
        central_yaml = self.run / "central.yaml"
        central_yaml.write_text(CENTRAL_YAML.format(**values))
        (self.run / "rules.yaml").write_text(RULES_YAML.format(**values))
        (self.run / "agent-sungai.yaml").write_text(AGENT_SUNGAI.format(**values))
        (self.run / "agent-resto.yaml").write_text(AGENT_RESTO.format(**values))

        read_token = self.token(central_yaml, "read", "demo dashboard")
        admin_token = self.token(central_yaml, "admin", "demo setup")
        admin_file = self.run / "admin-token"
        admin_file.write_text(admin_token + "\n")
        admin_file.chmod(0o600)

        self.spawn("central", [python, "-m", "central", "run", "-c", str(central_yaml)])
        api = f"http://127.0.0.1:{api_port}"
        self.wait("central's API", lambda: _get(f"{api}/healthz", None), 30, "central")
        for gateway in GATEWAYS:
            _post(f"{api}/api/v1/gateways", admin_token, gateway)
        for name in ("agent-sungai", "agent-resto"):
            self.spawn(name, [python, "-m", "agent", "run", "-c", str(self.run / f"{name}.yaml")])

        state = {
            "mqtt_url": broker.url,
            "influx_url": influx.url,
            "database": DATABASE,
            "api": api,
            "dashboard": f"{api}/",
            "read_token": read_token,
            "receiver": f"http://127.0.0.1:{receiver_port}/hook",
            "speed": speed,
            "devices": devices,
        }
        state_file = self.run / "state.json"
        state_file.write_text(json.dumps(state, indent=2))
        state_file.chmod(0o600)  # it holds the read token
        self.say(f"Pantau demo: logs, configs and data in {self.run}/\n")
        self.say(f"  dashboard    {api}/")
        self.say(f"  read token   {read_token}")
        self.say(f"  admin token  in {admin_file} (acknowledge and silence incidents)")
        self.say(f"  API          {api}/api/v1/  (Authorization: Bearer <token>)")
        self.say(f"  InfluxDB     {influx.url}  database {DATABASE}")
        self.say(f"  MQTT         {broker.url}")
        self.say(f"  webhooks     {state['receiver']}  (printed in {self.run}/receiver.log)\n")
        self.say("Simulated field devices:")
        self.say(
            "  gw-demo-sungai  batu-merah-level  radar level sensor, Modbus TCP "
            f"127.0.0.1:{devices['modbus_port']} (river/radar-level-mm); the river rises "
            "from 200 cm through waspada 250, siaga 300, awas 350; batu-merah-rain, a rain "
            "gauge on the same port, counts the downpour"
        )
        self.say(
            "  gw-demo-sungai  lapor-kota-http, lapor-kota-port  checks of a city app on "
            f"127.0.0.1:{devices['app_port']} that stops for a while every minute"
        )
        self.say(
            f"  gw-demo-resto   kasir-1  tapping box between a POS ({devices['pos_port']}) and "
            f"its printer ({devices['printer_port']}), replaying receipts\n"
        )
        self.wait("readings of all three families", lambda: self.families(influx), 60, "central")
        self.say(f"Readings arrive: {self.families(influx)}")
        if follow:
            self.follow()
        self.say("\nStop everything with: make demo-stop")
        return 0

    def token(self, central_yaml: Path, role: str, name: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "central", "token", "create", "--role", role, "--name", name,
             "-c", str(central_yaml)],
            capture_output=True, text=True, check=False, cwd=self.run,
            env={**os.environ, "PYTHONPATH": _repo_path()},
        )  # fmt: skip
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise DemoError(f"could not create a {role} token: {result.stderr.strip()}")
        return lines[-1].strip()

    def families(self, influx: InfluxDB) -> str:
        """'' until the river, the network checks and the tapping box all reached InfluxDB."""
        river = influx.values("SELECT last(level_cm) FROM readings", DATABASE)
        network = influx.values(
            'SELECT last("up") FROM readings WHERE device =~ /^lapor/', DATABASE
        )
        receipts = influx.values("SELECT count(total) FROM events WHERE kind = 'receipt'", DATABASE)
        if not (river and network and receipts):
            return ""
        app = "up" if network[0][1] else "down"
        return f"river {river[0][1]:.1f} cm, city app {app}, receipts read: {receipts[0][1]}"

    def follow(self) -> None:
        """Print the receiver's lines until the river's incident arrived there."""
        self.say("Webhooks at the receiver (the river-siaga incident fires within a minute;")
        self.say("Ctrl-C stops watching, the demo keeps running):")
        log = self.run / "receiver.log"
        seen = 0
        deadline = time.monotonic() + 120 / self.speed + 30
        try:
            while time.monotonic() < deadline:
                lines = log.read_text(errors="replace").splitlines() if log.exists() else []
                for line in lines[seen:]:
                    if line.startswith("waiting for webhooks"):
                        continue
                    self.say(f"  {line}")
                    if "river-siaga" in line and "signature ok" in line:
                        self.say(
                            "\nThe river incident fired and reached the receiver; "
                            "it shows on the dashboard too."
                        )
                        return
                seen = len(lines)
                time.sleep(0.5)
        except KeyboardInterrupt:
            return
        raise DemoError(f"no river-siaga webhook reached the receiver; see {self.run}/*.log")

    # down

    def down(self) -> int:
        path = self.run / "pids.json"
        if not path.exists():
            self.say("demo not running")
            return 0
        self.pids = json.loads(path.read_text())
        names = [n for n in STOP_ORDER if n in self.pids] + [
            n for n in self.pids if n not in STOP_ORDER
        ]
        for name in names:
            self.stop(name)
        stuck = [n for n in names if self.alive(n)]
        if stuck:
            self.say(f"error: still running: {', '.join(stuck)}")
            return 1
        path.unlink()
        (self.run / "state.json").unlink(missing_ok=True)
        self.say("demo stopped")
        return 0

    def stop(self, name: str, timeout: float = 15.0) -> None:
        if not self.alive(name):
            return
        pid = int(self.pids[name]["pid"])
        try:
            os.killpg(pid, signal.SIGTERM)  # started in its own session: pgid == pid
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while self.alive(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.alive(name):
            self.say(f"{name} ignored SIGTERM for {timeout:.0f} s; killing it")
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)


def _repo_path() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    extra = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{extra}" if extra else root


def _get(url: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read() or b"null") if r.status == 200 else None


def _post(url: str, token: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # already registered
            raise DemoError(f"POST {url}: {exc.code} {exc.read()[:300]!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="(default %(default)s)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="run the simulated timeline faster (tests)"
    )
    parser.add_argument("--no-follow", action="store_true", help="return once readings arrive")
    args = parser.parse_args(argv)
    if not 0.1 <= args.speed <= 100:
        parser.error("--speed must be between 0.1 and 100")
    demo = Demo(args.dir, args.speed)
    if args.action == "down":
        return demo.down()
    if (demo.run / "pids.json").exists():
        demo.say("stopping the demo that was running")
        Demo(args.dir).down()
    try:
        return demo.up(follow=not args.no_follow)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        demo.down()  # the logs stay in --dir
        return 1


if __name__ == "__main__":
    sys.exit(main())
