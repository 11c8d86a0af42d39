"""A real net-snmp agent (Debian's snmpd) on a free UDP loopback port, for tests and demos.

It answers SNMP v2c (a community) and v3 (a ``createUser`` user, authPriv) from
the host's own MIBs (IF-MIB rows for the host's interfaces, ...). Some subtrees
are served from a values file the caller writes, through snmpd's ``pass``
directive, so a test controls exactly what the "device" answers::

    agent = Snmpd(workdir).start()
    agent.set_values({"1.3.6.1.2.1.1.3.0": ("timeticks", 12345),
                      "1.3.6.1.2.1.33.1.2.5.0": ("integer", 545)})
    ...
    agent.stop()

Served from the values file (an OID there with no line answers noSuchInstance):

- sysUpTime.0 (overriding snmpd's own, so a test can make the device "reboot");
- the whole UPS-MIB (1.3.6.1.2.1.33);
- IF-MIB rows of a fake interface ``FAKE_IF_INDEX`` (1000): ifOperStatus, ifInErrors,
  ifOutErrors, ifName, ifHCInOctets, ifHCOutOctets, ifHighSpeed (see IF_COLUMNS, IFX_COLUMNS);
- a private subtree 1.3.6.1.4.1.99999 for anything else (rectifier-style values).

From a shell: ``python -m scripts.snmpd --dir .run/snmpd`` prints the port and
credentials as JSON and keeps running until Ctrl-C.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.services import Service, ServiceError, find_binary

SYS_UPTIME = "1.3.6.1.2.1.1.3"
UPS_MIB = "1.3.6.1.2.1.33"
IF_ENTRY = "1.3.6.1.2.1.2.2.1"
IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"
FAKE_IF_INDEX = 1000
PRIVATE = "1.3.6.1.4.1.99999"
# columns served for the fake interface: ifTable ifOperStatus, ifInErrors, ifOutErrors;
# ifXTable ifName, ifHCInOctets, ifHCInUcastPkts, ifHCOutOctets, ifHCOutUcastPkts, ifHighSpeed
IF_COLUMNS = (8, 14, 20)
IFX_COLUMNS = (1, 6, 7, 10, 11, 15)
TYPES = {"integer", "gauge", "counter", "counter64", "timeticks", "string", "objectid", "ipaddress"}

PASS_SCRIPT = """\
#!/bin/sh
# snmpd 'pass' helper: answers GET from the values file, one "OID TYPE VALUE" a line.
[ "$1" = "-g" ] || exit 0
line=$(grep -m1 "^$2 " "{values}") || exit 0
oid=${{line%% *}}; rest=${{line#* }}; type=${{rest%% *}}; value=${{rest#* }}
printf '%s\\n%s\\n%s\\n' "$oid" "$type" "$value"
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class Snmpd(Service):
    """snmpd on udp:127.0.0.1:<port> with a v2c community and a v3 authPriv user."""

    community: str = "pantau-ro"
    user: str = "pantau"
    auth_protocol: str = "SHA"
    auth_key: str = "pantau-auth-secret"
    priv_protocol: str = "AES"
    priv_key: str = "pantau-priv-secret"

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_udp_port()
        super().__post_init__()

    @property
    def values_path(self) -> Path:
        return self.workdir / "values.txt"

    def set_values(self, values: dict[str, tuple[str, int | str]]) -> None:
        """Replace what the ``pass`` subtrees answer: {numeric OID: (type, value)}.
        Types as snmpd's pass protocol names them: integer, gauge, counter,
        counter64, timeticks, string, objectid, ipaddress."""
        lines = []
        for oid, (kind, value) in values.items():
            if kind not in TYPES:
                raise ValueError(f"{oid}: unknown pass type {kind!r}; one of {sorted(TYPES)}")
            text = str(value)
            if "\n" in text:
                raise ValueError(f"{oid}: a value must be one line")
            lines.append(f".{oid.lstrip('.')} {kind} {text}\n")
        tmp = self.values_path.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.replace(self.values_path)  # snmpd never sees a half-written file

    def config_text(self, script: Path) -> str:
        passes = [f"pass -p 1 .{SYS_UPTIME} {script}", f"pass .{UPS_MIB} {script}"]
        passes += [f"pass .{IF_ENTRY}.{c}.{FAKE_IF_INDEX} {script}" for c in IF_COLUMNS]
        passes += [f"pass .{IFX_ENTRY}.{c}.{FAKE_IF_INDEX} {script}" for c in IFX_COLUMNS]
        passes.append(f"pass .{PRIVATE} {script}")
        return (
            f"rocommunity {self.community} 127.0.0.1\n"
            f'createUser {self.user} {self.auth_protocol} "{self.auth_key}" '
            f'{self.priv_protocol} "{self.priv_key}"\n'
            f"rouser {self.user} authpriv\n"
            "sysName pantau-test-agent\n"
            "sysLocation loopback\n" + "\n".join(passes) + "\n"
        )

    def start(self, timeout: float = 15.0) -> "Snmpd":
        binary = find_binary("snmpd")
        if not self.values_path.exists():
            self.set_values({SYS_UPTIME + ".0": ("timeticks", 100)})
        script = self.workdir / "pass.sh"
        script.write_text(PASS_SCRIPT.format(values=self.values_path))
        script.chmod(0o755)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(self.config_text(script))
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        log = self.workdir / "snmpd-agent.log"
        argv = [binary, "-f", "-Lf", str(log), "-C", "-c", str(conf)]
        # modules that would log noise or need more than a loopback test has
        argv += ["-I", "-smux,mteTrigger,mteTriggerConf,ipCidrRouteTable"]
        argv.append(f"udp:127.0.0.1:{self.port}")
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(persist), "MIBS": "", "MIBDIRS": ""}
        self._spawn_env(argv, env)
        self.wait_ready(log, timeout)
        return self

    def _spawn_env(self, argv: list[str], env: dict[str, str]) -> None:
        """``Service._spawn`` with an environment of our own (snmpd's persistent dir)."""
        self.log_path = self.workdir / "snmpd.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        (self.workdir / "snmpd.pid").write_text(str(self.proc.pid))

    def wait_ready(self, log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise ServiceError(f"snmpd exited with {self.proc.returncode}: {text[-500:]}")
            started = log.exists() and "NET-SNMP version" in log.read_text(errors="replace")
            if started and _udp_bound(self.port):
                return
            time.sleep(0.05)
        raise ServiceError(f"snmpd not listening on udp 127.0.0.1:{self.port} after {timeout}s")

    def info(self) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "community": self.community,
            "user": self.user,
            "auth_protocol": self.auth_protocol,
            "priv_protocol": self.priv_protocol,
            "pid": self.proc.pid if self.proc else None,
            "values": str(self.values_path),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.snmpd", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run/snmpd"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        agent = Snmpd(args.dir.resolve(), port=args.port).start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(agent.info()), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
