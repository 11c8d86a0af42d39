"""``pantau-central``: run the aggregator, check its config."""

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import wire
from central.config import CentralConfig, load_config
from wire.configfile import ConfigError
from wire.logs import setup_logging

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

    p = sub.add_parser("run", help="run central until SIGTERM / Ctrl-C")
    with_config(p)
    p.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="ingest processes sharing one MQTT shared subscription; one HTTP API (%(default)s)",
    )
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--retire", metavar="GROUP", help=argparse.SUPPRESS)
    p.add_argument("--stale-group", metavar="GROUP", help=argparse.SUPPRESS)
    p = sub.add_parser("check", help="validate the config, connect to the broker and InfluxDB")
    with_config(p)
    p.add_argument("--offline", action="store_true", help="skip the connection tests")

    tokens = sub.add_parser("token", help="API bearer tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION"
    )
    p = tokens.add_parser("create", help="create a token (printed once)")
    with_config(p)
    p.add_argument("--role", choices=["admin", "read"], required=True)
    p.add_argument("--name", default="", help="who or what uses it")
    p = tokens.add_parser("list", help="list tokens (never their secrets)")
    with_config(p)
    p = tokens.add_parser("revoke", help="revoke a token by id")
    with_config(p)
    p.add_argument("id", type=int)

    webhook = sub.add_parser("webhook", help="webhook tools").add_subparsers(
        dest="webhook_command", required=True, metavar="ACTION"
    )
    p = webhook.add_parser("test", help="send a signed sample alert to a URL")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--status", choices=["firing", "resolved"], default="firing")

    gateway = sub.add_parser("gateway", help="act on a gateway").add_subparsers(
        dest="gateway_command", required=True, metavar="ACTION"
    )
    p = gateway.add_parser(
        "push-config", help="send a gateway a new device list (and the profiles it needs)"
    )
    with_config(p)
    p.add_argument("id", help="the gateway id")
    p.add_argument("file", type=Path, help="YAML with devices: (and optionally profiles:)")
    p.add_argument(
        "--profiles-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="send the profiles of DIR the devices use (repeatable)",
    )
    p.add_argument("--central", metavar="URL", help="central's API (default: from the config)")
    p.add_argument(
        "--token-file", type=Path, help="an admin API token (default: $PANTAU_CENTRAL_TOKEN)"
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the gateway (%(default)s)"
    )

    letters = sub.add_parser("dead-letters", help="messages central refused").add_subparsers(
        dest="dead_letters_command", required=True, metavar="ACTION"
    )
    p = letters.add_parser(
        "replay",
        help="after a fix: store the dead letters again (those stored are deleted, "
        "those refused again stay with the new reason)",
    )
    with_config(p)
    p.add_argument("--reason", help="only letters with this reason (e.g. influx_rejected)")
    p.add_argument("--gateway", help="only letters from this gateway")

    rules = sub.add_parser("rules", help="alert rules tools").add_subparsers(
        dest="rules_command", required=True, metavar="ACTION"
    )
    p = rules.add_parser(
        "check", help="validate a rules file; warn about rules no profile can match"
    )
    p.add_argument("file", type=Path)
    p.add_argument(
        "--profiles-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="profiles beyond the shipped ones (a gateway's own profiles_dir); repeatable",
    )
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"expected a number of workers from 1 to 64, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()  # without a timestamp when standard error is the journal
    if args.command == "webhook":
        from central.alerts.cli import webhook_test

        return webhook_test(args)
    if args.command == "gateway":
        from central.configpush import push_config

        return push_config(args)
    if args.command == "rules":
        from central.alerts.cli import rules_check

        return rules_check(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        exc.report()
        return 2
    setup_logging(config.log.level, config.log.format)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "check":
        return check(config, offline=args.offline)
    if args.command == "token":
        return token_command(config, args)
    if args.command == "dead-letters":
        return replay_command(config, args)
    return run(
        config,
        args.config,
        args.workers,
        args.worker_index,
        retire=args.retire,
        stale_group=args.stale_group,
    )


def replay_command(config: CentralConfig, args: argparse.Namespace) -> int:
    """``dead-letters replay``: 0 when every chosen letter was stored, 1 when some were
    refused again, 3 when InfluxDB can't take writes now (run it again later)."""
    from central.database import target
    from central.influx import make_writer
    from central.registry import Registry
    from central.replay import Replayer

    registry = Registry(target(config.database.url, config.data_dir, "registry.db"))
    writer = make_writer(config.influx)
    try:
        result = Replayer(config, registry, writer).replay(args.reason, args.gateway)
    finally:
        writer.close()
        registry.close()
    print(f"replayed: {result.stored} stored, {result.refused} refused again")
    for reason, count in sorted(result.reasons.items()):
        print(f"  refused again: {count} {reason}")
    if result.held:
        print(f"error: stopped, InfluxDB can't take writes now: {result.held}", file=sys.stderr)
        return 3
    return 1 if result.refused else 0


def token_command(config: CentralConfig, args: argparse.Namespace) -> int:
    from central.tokens import token_store

    store = token_store(config.data_dir, config.database.url)
    try:
        if args.token_command == "create":
            info, secret = store.create(args.role, args.name)
            print(f"created {info.role} token {info.id} ({info.name}); it is shown only once:")
            print(secret)
        elif args.token_command == "list":
            for t in store.list():
                print(f"{t.id}\t{t.role}\t{t.name}")
        elif not store.revoke(args.id):
            print(f"error: no token with id {args.id}", file=sys.stderr)
            return 1
    finally:
        store.close()
    return 0


def run(
    config: CentralConfig,
    path: Path,
    workers: int = 1,
    index: int = 0,
    *,
    retire: str | None = None,
    stale_group: str | None = None,
) -> int:
    from central import workers as pool

    os.umask(0o077)  # data files 0600, folders 0700, as the unit's UMask=0077
    last, last_group = pool.previous_run(config.data_dir) if not index else (1, None)
    retired = list(range(max(1, workers), last))
    # several processes: worker 0's /metrics adds up every worker's files (this must
    # come before anything imports prometheus-client)
    metrics_dir = None
    if index or workers > 1 or retired:
        metrics_dir = pool.share_metrics(config.data_dir, clean=not index)

    from central.ingest import tune_gc
    from central.service import Central, serve

    tune_gc()
    try:
        if index:
            mine = pool.worker_config(config, index, workers, retire)
            return pool.run_worker(
                mine,
                index,
                path,
                retire=retire is not None,
                stale_group=stale_group,
                metrics_dir=metrics_dir,
            )
        mine = pool.worker_config(config, 0, workers)
        central = Central(mine, config_path=path, metrics_dir=metrics_dir)
    except ConfigError as exc:
        exc.report()
        return 2
    group = mine.mqtt.shared_group
    stale = last_group if last_group and last_group != group else None
    if stale:
        central.ingest.stale_subscriptions = pool.shared_topics(stale)
    pool.record_run(config.data_dir, workers, group)
    team = None
    if workers > 1 or retired:
        team = pool.Workers(path, workers, retired, last_group, stale, metrics_dir=metrics_dir)
    asyncio.run(serve(central, team))
    return 0


def check(config: CentralConfig, offline: bool = False) -> int:
    from central.checks import run_checks

    problems = run_checks(config, offline=offline)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
