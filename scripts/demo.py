"""``make demo``: the whole chain on this machine, in .run/demo/.

Starts mosquitto and InfluxDB on free loopback ports, central, and an agent with
simulated devices; waits until points arrive in InfluxDB and prints the commands
to watch them. ``python -m scripts.demo down`` stops everything it started.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.services import InfluxDB, Mosquitto, ServiceError, free_port

RUN = Path(".run/demo")

AGENT_YAML = """\
gateway:
  id: gw-demo-01
  site: ambon
mqtt:
  url: {mqtt_url}
  username: gw-demo-01
  password: demo-secret
buffer:
  path: {run}/agent-buffer.db
health:
  interval: 10s
devices:
  - id: counter-1
    profile: simulated/counter
    interval: 100ms
    connection: {{}}
  - id: river-1
    profile: simulated/sine
    interval: 1s
    connection: {{}}
"""

CENTRAL_YAML = """\
mqtt:
  url: {mqtt_url}
  username: central
  password: demo-secret
influx:
  url: {influx_url}
  api: v1
  database: pantau
data_dir: {run}/central-data
api:
  listen: 127.0.0.1:{api_port}
"""


def _spawn(argv: list[str], name: str) -> int:
    log = open(RUN / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def up() -> int:
    if (RUN / "state.json").exists():
        down()
    RUN.mkdir(parents=True, exist_ok=True)
    run = RUN.resolve()
    try:
        broker = Mosquitto(run / "mosquitto").start()
        influx = InfluxDB(run / "influxdb").start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (run / "mosquitto.pid").write_text(str(broker.proc.pid if broker.proc else ""))
    (run / "influxd.pid").write_text(str(influx.proc.pid if influx.proc else ""))
    api_port = free_port()
    values = {"mqtt_url": broker.url, "influx_url": influx.url, "run": run, "api_port": api_port}
    (run / "agent.yaml").write_text(AGENT_YAML.format(**values))
    (run / "central.yaml").write_text(CENTRAL_YAML.format(**values))
    python = sys.executable
    _spawn([python, "-m", "central", "run", "-c", str(run / "central.yaml")], "central")
    _spawn([python, "-m", "agent", "run", "-c", str(run / "agent.yaml")], "agent")
    state = {
        "mqtt_url": broker.url,
        "influx_url": influx.url,
        "api": f"http://127.0.0.1:{api_port}",
    }
    (run / "state.json").write_text(json.dumps(state))
    query = "SELECT count FROM readings WHERE time > now() - 10s"
    watch = f"curl -s '{influx.url}/query?db=pantau&epoch=ms' --data-urlencode \"q={query}\""
    print(
        f"mosquitto  {broker.url}\ninfluxdb   {influx.url}\ncentral    http://127.0.0.1:{api_port}"
    )
    print(f"logs and configs in {run}/")
    deadline = time.monotonic() + 15
    count = 0
    while time.monotonic() < deadline:
        try:
            rows = influx.values("SELECT count(count) FROM readings", "pantau")
            count = int(rows[0][1]) if rows else 0
        except (ServiceError, OSError, KeyError):
            count = 0
        if count:
            break
        time.sleep(0.5)
    if not count:
        print("error: no points reached InfluxDB within 15 s; see the logs above", file=sys.stderr)
        return 1
    print(f"\npoints are arriving: {count} so far. Watch them with:\n  {watch}")
    print(
        f"  {python} -m scripts.demo watch     # counts per second, Ctrl-C to stop\n"
        f"stop everything with: make demo-stop"
    )
    return 0


def watch() -> int:
    state = json.loads((RUN / "state.json").read_text())
    influx = InfluxDB(RUN / "influxdb", port=int(state["influx_url"].rsplit(":", 1)[1]))
    try:
        while True:
            rows = influx.values(
                "SELECT last(count), count(count) FROM readings WHERE time > now() - 1m", "pantau"
            )
            if rows:
                print(f"last count {rows[0][1]:.0f}, {rows[0][2]} points in the last minute")
            time.sleep(1)
    except KeyboardInterrupt:
        return 0


def down() -> int:
    for name in ("agent", "central", "influxd", "mosquitto"):
        pid_file = RUN / f"{name}.pid"
        if not pid_file.exists():
            continue
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()
    (RUN / "state.json").unlink(missing_ok=True)
    print("demo stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "watch"])
    args = parser.parse_args(argv)
    return {"up": up, "down": down, "watch": watch}[args.action]()


if __name__ == "__main__":
    sys.exit(main())
