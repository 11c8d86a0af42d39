"""``pantau-provision``: from a blank SD card to a trusted gateway.

Run ``pantau-provision COMMAND --help`` for each command; docs/provisioning.md walks a
technician through all of them in order.
"""

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import wire
from provisioning.acl import DEFAULT_CENTRAL_USER
from provisioning.errors import InputError, ProvisionError

if TYPE_CHECKING:
    from provisioning.central import Central
    from provisioning.state import ProvisionState

ENV_TOKEN = "PANTAU_CENTRAL_TOKEN"
ENV_BROKER = "PANTAU_PROVISION_BROKER"


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 64G or 500M")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        type=Path,
        default=None,
        help="provisioning state directory ($PANTAU_PROVISION_STATE, else ./pantau-provisioning)",
    )
    central = argparse.ArgumentParser(add_help=False)
    central.add_argument(
        "--central", metavar="URL", help="central's URL, e.g. https://pantau.kota.go.id"
    )
    central.add_argument(
        "--token", help=f"central's admin API token (better: ${ENV_TOKEN} or --token-file)"
    )
    central.add_argument("--token-file", type=Path, help="a file holding central's API token")
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument(
        "--broker",
        metavar="URL",
        help=f"the broker gateways connect to, mqtt://host:1883 or mqtts://host:8883 "
        f"(${ENV_BROKER}; remembered from the last run)",
    )
    broker.add_argument(
        "--auth",
        choices=["password", "cert"],
        help="how gateways log in (default: cert once `ca init` was run, else password)",
    )
    broker.add_argument("--force", action="store_true", help="re-provision: new credentials")

    parser = argparse.ArgumentParser(
        prog="pantau-provision",
        description="Pantau provisioning: credentials, broker config, SD cards, labels.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pantau-provision {wire.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gw = sub.add_parser("gateway", help="provision gateways").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = gw.add_parser(
        "add", parents=[common, central, broker], help="make a bundle for one gateway"
    )
    p.add_argument("id", help="gateway id, e.g. gw-ambon-01")
    p.add_argument("--site", required=True, help="where it is installed")
    p.add_argument("--name", help="a human name")
    p.add_argument("--lat", help="latitude, decimal degrees")
    p.add_argument("--lon", help="longitude, decimal degrees")
    p.add_argument(
        "--timezone", help="Asia/Jakarta (WIB), Asia/Makassar (WITA), Asia/Jayapura (WIT)"
    )
    p.add_argument("--out", type=Path, required=True, help="bundles go to OUT/<id>/")
    p = gw.add_parser("list", parents=[common], help="the gateways provisioned so far")
    p = gw.add_parser(
        "register", parents=[common, central], help="register a provisioned gateway in central"
    )
    p.add_argument("id")
    p = gw.add_parser(
        "revoke", parents=[common], help="the gateway may never log in again (its credentials)"
    )
    p.add_argument("id")
    p = gw.add_parser("rotate", parents=[common], help="new password or certificate: a new bundle")
    p.add_argument("id")
    p.add_argument(
        "--out", type=Path, help="the new bundle goes to OUT/<id>/ (default: where the last went)"
    )

    p = sub.add_parser(
        "broker-config", parents=[common], help="passwd, acl and mosquitto.conf for all gateways"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--conf-dir",
        default="/etc/mosquitto/pantau",
        help="where the files go on the broker (%(default)s)",
    )
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--bind", help="listen address (default: every interface)")
    p.add_argument(
        "--tls-port", type=int, default=8883, help="client-certificate listener (with a CA)"
    )
    p.add_argument("--persistence-dir", default="/var/lib/mosquitto/")
    p.add_argument(
        "--central-user",
        default=DEFAULT_CENTRAL_USER,
        help="central's broker username (%(default)s, as mqtt.username in central.yaml)",
    )
    p.add_argument("--rotate-central", action="store_true", help="give central a new password")
    p.add_argument(
        "--central-workers",
        type=int,
        default=1,
        metavar="N",
        help="as `pantau-central run --workers N`: one broker user per worker "
        "(<central-user>-1 ...), same password, since the broker makes the username each "
        "client's id (%(default)s)",
    )

    ca = sub.add_parser("ca", help="certificate authority for client certificates").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = ca.add_parser("init", parents=[common], help="create the CA (once)")
    p.add_argument("--cn", default="Pantau CA", help="the CA's name (%(default)s)")
    p = ca.add_parser("server-cert", parents=[common], help="the broker's TLS certificate")
    p.add_argument("hosts", nargs="+", help="the broker's host names and IP addresses")
    p.add_argument("--out", type=Path, required=True)
    p = ca.add_parser("client-cert", parents=[common], help="a client certificate (e.g. central)")
    p.add_argument("name", help="the broker username it stands for")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("flash", help="write an .img or .img.xz to a card or image file, verify")
    p.add_argument("image", type=Path)
    p.add_argument("device", type=Path, help="/dev/sdX, /dev/mmcblk0 or an image file")
    p.add_argument("--yes", action="store_true", help="don't ask, even for a large target")
    p.add_argument(
        "--confirm-above",
        type=_size,
        default=128 * 1024**3,
        metavar="SIZE",
        help="ask before writing to anything larger (default 128G)",
    )
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("seed", help="put a bundle and first-boot setup on a card (no mounting)")
    p.add_argument("target", type=Path, help="the flashed card (/dev/sdX) or image file")
    p.add_argument("--bundle", type=Path, required=True, help="the gateway's bundle directory")
    p.add_argument("--wheelhouse", type=Path, help="directory of wheels: pantau + dependencies")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-psk", help="better: $PANTAU_WIFI_PSK")
    p.add_argument("--wifi-country", default="ID")
    p.add_argument("--hostname")
    p.add_argument("--unit", type=Path, help="a systemd unit to use instead of the default")

    p = sub.add_parser("label", parents=[common], help="a printable label with a QR code")
    p.add_argument("id")
    p.add_argument("--out", type=Path, required=True, help="label.png or label.svg")
    p.add_argument(
        "--central", metavar="URL", help="central's URL (default: remembered from --central)"
    )
    p.add_argument("--check-url", help="URL in the QR code (default: CENTRAL/gateways/ID)")

    p = sub.add_parser("batch", parents=[common, central, broker], help="many gateways from a CSV")
    p.add_argument("csv", type=Path, help="columns: id, site, name, lat, lon, timezone")
    p.add_argument("--out", type=Path, required=True, help="OUT/<id>/ bundles and OUT/broker/")
    p.add_argument("--labels", action="store_true", help="also OUT/<id>/label.png")

    p = sub.add_parser(
        "verify", parents=[common, central], help="test the gateway's login, see it in central"
    )
    p.add_argument("id")
    p.add_argument("--bundle", type=Path, help="its bundle (default: where gateway add wrote it)")
    p.add_argument("--broker", metavar="URL", help="override the bundle's broker URL")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for central")
    return parser


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProvisionError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
    token = args.token or os.environ.get(ENV_TOKEN)
    if not token:
        raise ProvisionError(f"--central needs a token: --token-file FILE or ${ENV_TOKEN}")
    return str(token)


def _central(args: argparse.Namespace) -> "Central | None":
    from provisioning.central import Central

    if not getattr(args, "central", None):
        return None
    return Central(args.central, _token(args))


def _state(args: argparse.Namespace) -> "ProvisionState":
    from provisioning.state import ProvisionState

    return ProvisionState.locate(args.state)


def _broker_url(args: argparse.Namespace, state: "ProvisionState") -> str:
    from provisioning.bundle import check_broker_url

    url = args.broker or os.environ.get(ENV_BROKER) or state.settings().broker_url
    if not url:
        raise ProvisionError(
            "which broker do gateways connect to? give --broker mqtt://host:1883 once "
            "(it is remembered in the state directory)"
        )
    return check_broker_url(url)


def _say(lines: list[str]) -> None:
    for line in lines:
        print(line)


def _gateway_add(args: argparse.Namespace) -> int:
    from provisioning.gateways import build_spec
    from provisioning.provision import add_gateways

    spec, problems = build_spec(
        args.id, args.site, name=args.name, lat=args.lat, lon=args.lon, timezone=args.timezone
    )
    if spec is None:
        raise InputError([f"--{field}: {message}" for field, message in problems.items()])
    state = _state(args)
    records, notes = add_gateways(
        state,
        [spec],
        args.out,
        _broker_url(args, state),
        auth=args.auth,
        central=_central(args),
        force=args.force,
    )
    record = records[0]
    _say(notes)
    print(f"{record.id}: bundle in {record.bundle} ({record.auth} login)")
    print("next: `pantau-provision broker-config --out DIR` and install it on the broker")
    return 0


def _batch(args: argparse.Namespace) -> int:
    import time

    from provisioning.batch import read_csv
    from provisioning.brokerconf import BrokerOptions, write_broker_config
    from provisioning.label import write_label
    from provisioning.provision import add_gateways

    started = time.monotonic()
    specs = read_csv(args.csv)
    state = _state(args)
    central = _central(args)
    records, notes = add_gateways(
        state,
        specs,
        args.out,
        _broker_url(args, state),
        auth=args.auth,
        central=central,
        force=args.force,
    )
    notes += write_broker_config(state, args.out / "broker", BrokerOptions())
    if args.labels:
        for r in records:
            write_label(Path(r.bundle) / "label.png", r.id, r.site, r.name, _check_url(state, r.id))
    _say(notes)
    print(
        f"{len(records)} bundles in {args.out}, broker config in {args.out / 'broker'} "
        f"({time.monotonic() - started:.1f}s)"
    )
    return 0


def _check_url(
    state: "ProvisionState",
    gateway_id: str,
    given: str | None = None,
    central_url: str | None = None,
) -> str | None:
    """The gateway's page on central's dashboard, or ``--check-url`` with ``{id}`` filled."""
    from provisioning.label import gateway_page

    if given:
        return given.replace("{id}", gateway_id)
    central_url = central_url or state.settings().central_url
    return gateway_page(central_url, gateway_id) if central_url else None


def _broker_config(args: argparse.Namespace) -> int:
    from provisioning.brokerconf import BrokerOptions, write_broker_config

    opts = BrokerOptions(
        conf_dir=args.conf_dir.rstrip("/"),
        port=args.port,
        bind=args.bind,
        tls_port=args.tls_port,
        persistence_dir=args.persistence_dir,
        central_user=args.central_user,
        rotate_central=args.rotate_central,
        central_workers=args.central_workers,
    )
    _say(write_broker_config(_state(args), args.out, opts))
    return 0


def _ca(args: argparse.Namespace) -> int:
    from provisioning import ca
    from provisioning.files import write_file, write_secret

    state = _state(args)
    if args.action == "init":
        state.ensure()
        path = ca.init_ca(state.ca_dir, args.cn)
        print(f"CA created: {path} (its key stays in {state.ca_dir}, mode 600)")
        print("gateways provisioned from now on get client certificates")
        return 0
    if args.action == "server-cert":
        issued = ca.issue_server(state.ca_dir, args.hosts)
        name = "server"
    else:
        issued = ca.issue_client(state.ca_dir, args.name)
        name = "client"
    write_file(args.out / f"{name}.crt", issued.cert_pem)
    write_secret(args.out / f"{name}.key", issued.key_pem)
    write_file(args.out / "ca.crt", (state.ca_dir / "ca.crt").read_bytes())
    print(f"wrote {name}.crt, {name}.key (mode 600) and ca.crt to {args.out}")
    return 0


def _ask(question: str) -> bool:
    sys.stderr.write(f"{question} Type yes to continue: ")
    sys.stderr.flush()
    try:
        return sys.stdin.readline().strip().lower() == "yes"
    except (OSError, KeyboardInterrupt):
        return False


def _flash(args: argparse.Namespace) -> int:
    from provisioning.flash import check_target, flash, target_size

    try:
        mounts_text = Path("/proc/mounts").read_text()
    except OSError:
        mounts_text = ""
    ask = _ask if sys.stdin.isatty() else None
    check_target(
        args.device,
        mounts_text,
        size=target_size(args.device),
        confirm_above=args.confirm_above,
        yes=args.yes,
        ask=ask,
    )
    result = flash(args.image, args.device, show_progress=not args.no_progress)
    print(f"wrote and verified {result.size} bytes to {args.device} (sha256 {result.sha256})")
    return 0


def _seed(args: argparse.Namespace) -> int:
    from provisioning.seed import SeedOptions, seed

    opts = SeedOptions(
        wifi_ssid=args.wifi_ssid,
        wifi_psk=args.wifi_psk or os.environ.get("PANTAU_WIFI_PSK"),
        wifi_country=args.wifi_country,
        hostname=args.hostname,
        wheelhouse=args.wheelhouse,
        unit_file=args.unit,
    )
    _say(seed(args.target, args.bundle, opts))
    return 0


def _label(args: argparse.Namespace) -> int:
    from provisioning.label import write_label

    state = _state(args)
    record = state.gateway(args.id)
    url = _check_url(state, record.id, args.check_url, args.central)
    out = write_label(args.out, record.id, record.site, record.name, url)
    print(f"label for {record.id}: {out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from provisioning.verify import verify

    bundle = args.bundle
    if bundle is None:
        bundle = Path(_state(args).gateway(args.id).bundle)
    from provisioning.bundle import check_bundle

    config = check_bundle(bundle)
    if config.gateway.id != args.id:
        raise ProvisionError(f"the bundle in {bundle} is for {config.gateway.id}, not {args.id}")
    result = verify(args.id, bundle, broker_url=args.broker, central=_central(args), wait=args.wait)
    print(f"{args.id}: logged in to the broker and published a test birth")
    if result.central_seen is not None:
        print(f"{args.id}: central saw it")
    return 0


NEXT_BROKER = (
    "next: `pantau-provision broker-config --out DIR`, install it on the broker and "
    "restart mosquitto"
)


def _revoke(args: argparse.Namespace) -> int:
    from provisioning.lifecycle import revoke

    state = _state(args)
    before = state.gateway(args.id).revoked
    record = revoke(state, args.id)
    if before is not None:
        print(f"{record.id}: revoked already")
    else:
        what = "password" if record.auth == "password" else f"certificate {record.cert_serial}"
        print(f"{record.id}: revoked ({what}); broker-config now leaves it out")
    print(NEXT_BROKER)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from provisioning.lifecycle import rotate

    record = rotate(_state(args), args.id, args.out)
    what = "password" if record.auth == "password" else f"certificate {record.cert_serial}"
    print(f"{record.id}: new {what}; new bundle in {record.bundle}")
    files = "mqtt.password" if record.auth == "password" else "client.crt and client.key"
    print(f"on the gateway: replace {files} in /etc/pantau/ and restart pantau-agent")
    print(NEXT_BROKER + " (the old credentials stop working then)")
    return 0


def _gateway(args: argparse.Namespace) -> int:
    if args.action == "add":
        return _gateway_add(args)
    if args.action == "revoke":
        return _revoke(args)
    if args.action == "rotate":
        return _rotate(args)
    state = _state(args)
    if args.action == "list":
        for r in state.gateways():
            status = "revoked" if r.revoked is not None else r.auth
            print(f"{r.id}\t{r.site}\t{status}\t{r.bundle}")
        return 0
    central = _central(args)
    if central is None:
        raise ProvisionError("register needs --central URL")
    outcome = central.register(state.gateway(args.id).spec)
    done = "registered in central" if outcome == "created" else "already registered in central"
    print(f"{args.id}: {done}")
    state.remember(central_url=central.url)
    return 0


COMMANDS = {
    "gateway": _gateway,
    "batch": _batch,
    "broker-config": _broker_config,
    "ca": _ca,
    "flash": _flash,
    "seed": _seed,
    "label": _label,
    "verify": _verify,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return 1
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
