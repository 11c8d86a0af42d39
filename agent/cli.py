"""``pantau-agent``: run the gateway agent, check its config, poll devices on site."""

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import wire
from agent.config import AgentConfig, load_config
from agent.devices import Device, build_devices
from agent.lean import defer_unused_imports
from wire.configfile import ConfigError
from wire.logs import setup_logging

log = logging.getLogger("agent")

DEFAULT_CONFIG = Path("/etc/pantau/agent.yaml")
# what ``run`` imports besides the config and the drivers, standard modules it first
# uses while running included (asyncio.to_thread's workers, getaddrinfo's host encoding)
RUNTIME_MODULES = (
    "agent.app",
    "agent.buffer",
    "agent.probe",
    "agent.sdnotify",
    "concurrent.futures.thread",
    "encodings.idna",
    "queue",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pantau-agent",
        description=(
            "Pantau gateway agent: reads field devices, buffers on disk, publishes over MQTT."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pantau-agent {wire.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="agent.yaml (%(default)s)"
        )

    p = sub.add_parser("run", help="run the agent until SIGTERM / Ctrl-C")
    with_config(p)
    p = sub.add_parser(
        "check", help="validate config, profiles and the install; connect to the broker"
    )
    with_config(p)
    p.add_argument("--offline", action="store_true", help="skip the broker connection test")
    p = sub.add_parser("poll", help="poll devices and print one JSON line per reading")
    with_config(p)
    p.add_argument("--once", action="store_true", help="poll each device once (the default)")
    p.add_argument("--device", help="only this device id")
    p = sub.add_parser("receipts", help="parse a captured POS→printer byte stream into receipts")
    p.add_argument("--profile", default="tapping-box/escpos-generic", help="%(default)s")
    p.add_argument("--profiles-dir", type=Path, default=None)
    p.add_argument("--text", action="store_true", help="include each receipt's decoded text")
    p.add_argument("file", type=Path, help="captured bytes ('-' for standard input)")
    return parser


def main(argv: list[str] | None = None) -> int:
    defer_unused_imports()  # before paho is imported: ~1.3 MiB less on a gateway
    args = _parser().parse_args(argv)
    # under systemd (stderr is JOURNAL_STREAM) journald stamps the time itself
    setup_logging()
    if args.command == "receipts":
        from agent.receipts import print_receipts

        return print_receipts(args.file, args.profile, args.profiles_dir, show_text=args.text)
    try:
        config = load_config(args.config)
        devices = build_devices(config, str(args.config))
    except ConfigError as exc:
        exc.report()
        return 2
    setup_logging(config.log.level, config.log.format)
    # the poller logs a failing device once; pymodbus would log every failed poll
    # (a unit that doesn't answer is an ERROR to pymodbus, on every request)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if args.command == "check":
        return check(config, devices, offline=args.offline)
    if args.command == "poll":
        try:
            devices = pushed_devices(config, devices)
        except ConfigError as exc:
            exc.report()
            return 2
        return poll(devices, args.device)
    return run(config, devices, args.config)


def run(config: AgentConfig, devices: list[Device], config_path: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT; then commit the buffer, publish the death, exit 0."""
    import sqlite3

    from agent.app import Agent
    from agent.buffer import open_buffer
    from agent.sdnotify import Notifier

    try:
        buffer = open_buffer(config.buffer.path, config.buffer.max_mb, config.buffer.max_readings)
    except (OSError, sqlite3.Error) as exc:
        print(f"error: buffer.path: cannot open {config.buffer.path}: {exc}", file=sys.stderr)
        return 1
    remote = push = None
    base = config
    if config.remote_config.enabled:
        import time

        from agent.remote import in_force, store_for

        remote = store_for(config)
        config, devices, push = in_force(config, devices, remote, time.time())
        if push is not None:
            log.info("devices pushed from central (apply-config %s) are in force", push.id)
    agent = Agent(
        config,
        devices,
        buffer,
        config_path=config_path,
        notifier=Notifier(),
        remote=remote,
        push=push,
        base_config=base,
    )

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = None
        if config.metrics.listen:
            from agent.metrics import serve_metrics

            try:
                server = serve_metrics(agent, config.metrics.listen, loop)
            except OSError as exc:  # readings matter more than metrics: run without them
                log.error("metrics.listen: cannot listen on %s: %s", config.metrics.listen, exc)
        try:
            await agent.run(stop)
        finally:
            if server is not None:
                await asyncio.to_thread(server.close)

    asyncio.run(_main())
    return 0


def pushed_devices(
    config: AgentConfig, devices: list[Device], say: Callable[[str], None] | None = None
) -> list[Device]:
    """The devices central pushed (apply-config) when a push is in force, else ``devices``;
    read only: ``run`` rolls back an expired push, ``check`` and ``poll`` don't."""
    if not config.remote_config.enabled:
        return devices
    from agent.remote import build_pushed, store_for

    store = store_for(config)
    push = store.current()
    if push is None:
        return devices
    if say is not None:
        state = "confirmed" if push.confirmed else "not yet confirmed by the broker"
        say(f"devices pushed from central (apply-config {push.id}, {state}) replace devices:")
    try:
        return build_pushed(config, push, store.profiles_dir(push))[1]
    except ConfigError as exc:
        raise ConfigError([f"pushed config {push.id}: {p}" for p in exc.problems]) from None


def check(config: AgentConfig, devices: list[Device], offline: bool = False) -> int:
    problems: list[str] = []
    print(f"config ok: gateway {config.gateway.id} at site {config.gateway.site}")
    try:
        devices = pushed_devices(config, devices, say=print)
    except ConfigError as exc:
        problems += exc.problems
    for device in devices:
        every = f"every {device.config.interval:g}s"
        print(f"device ok: {device.id} ({device.config.profile}, {every})")
    # a broken install shows here, and install.sh fills the service's bytecode cache
    # by running this check
    for name in RUNTIME_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            problems.append(f"install: cannot import {name}: {exc}")
    try:
        config.mqtt.secret()
    except OSError as exc:
        problems.append(
            f"mqtt.password_file: cannot read {config.mqtt.password_file}: {exc.strerror}"
        )
    if not problems and not offline:
        from agent.probe import probe_broker

        error = probe_broker(config)
        if error:
            problems.append(f"mqtt.url: {config.mqtt.url}: {error}")
        else:
            print(f"broker ok: {config.mqtt.url} accepted {config.mqtt.username or 'anonymous'}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def poll(devices: list[Device], only: str | None) -> int:
    import json

    from agent.clock import SystemClock
    from agent.drivers import EventOut
    from agent.poller import Poller

    selected = [d for d in devices if only is None or d.id == only]
    if only is not None and not selected:
        print(f"error: no enabled device with id {only!r}", file=sys.stderr)
        return 2

    def sink(device: str, ts: int, samples: list) -> None:
        for s in samples:
            line = {
                "device": device,
                "metric": s.metric,
                "value": s.value,
                "unit": s.unit,
                "ts": ts,
                "quality": s.quality,
            }
            if s.error is not None:
                line["error"] = s.error
            print(json.dumps(line, ensure_ascii=False), flush=True)

    def on_event(device: str, event: EventOut) -> None:
        line = {"device": device, "event": event.kind, "ts": event.ts, "data": event.data}
        print(json.dumps(line, ensure_ascii=False), flush=True)

    async def _poll_all() -> None:
        clock = SystemClock()
        pollers = [Poller(d.driver, sink, clock, events=on_event) for d in selected]
        at = clock.time()
        await asyncio.gather(*(p.poll(at) for p in pollers))
        for p in pollers:
            await p._close()

    asyncio.run(_poll_all())
    return 0


if __name__ == "__main__":
    sys.exit(main())
