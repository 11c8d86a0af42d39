"""``pantau-central``: run the aggregator, check its config."""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import wire
from central.config import CentralConfig, load_config
from wire.configfile import ConfigError

DEFAULT_CONFIG = Path("/etc/pantau/central.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pantau-central",
        description="Pantau central aggregator: MQTT ingest into InfluxDB, registry, API, alerts.",
    )
    parser.add_argument("--version", action="version", version=f"pantau-central {wire.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="central.yaml (%(default)s)"
        )

    with_config(sub.add_parser("run", help="run central until SIGTERM / Ctrl-C"))
    p = sub.add_parser("check", help="validate the config, connect to the broker and InfluxDB")
    with_config(p)
    p.add_argument("--offline", action="store_true", help="skip the connection tests")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log.level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "check":
        return check(config, offline=args.offline)
    return run(config)


def run(config: CentralConfig) -> int:
    from central.service import Central, serve

    central = Central(config)
    asyncio.run(serve(central))
    return 0


def check(config: CentralConfig, offline: bool = False) -> int:
    from central.checks import run_checks

    problems = run_checks(config, offline=offline)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
