"""The ping driver against the real loopback: 127.0.0.1 and ::1, nothing else.

"No answer" and "foreign replies" need a host that does not answer: a private
network namespace (``unshare --net``, root only) whose loopback ignores echo
requests (``net.ipv4.icmp_echo_ignore_all``). The same namespace lets the test
allow unprivileged ICMP sockets (``ping_group_range``) without touching the host.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import DeviceContext, DriverError
from agent.drivers.ping import PingConnection, PingDriver, PingProfile, parse_ping_output
from wire.structs import ValidationError, convert, error_location

ROOT = Path(__file__).resolve().parents[2]


def can_raw() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except OSError:
        return False
    return True


@cache
def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return done.returncode == 0


def driver(host: str, method: str = "auto", timeout: float = 2.0, **profile: Any) -> PingDriver:
    settings = {"driver": "ping", "count": 3, "spacing": 0.02, "timeout": 0.5, **profile}
    return PingDriver(
        DeviceContext("ping-1", 10.0, timeout, 0),
        convert(settings, PingProfile),
        convert({"host": host, "method": method}, PingConnection),
    )


def poll(d: PingDriver) -> dict[str, Any]:
    samples = asyncio.run(d.read(1000.0))
    return {s.metric: s for s in samples}


def assert_answered(readings: dict[str, Any]) -> None:
    assert readings["loss_pct"].value == 0.0
    assert readings["up"].value == 1
    low, avg, high = (readings[m].value for m in ("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms"))
    assert 0 <= low <= avg <= high < 1000
    assert {s.quality for s in readings.values()} == {"good"}


@pytest.mark.skipif(not can_raw(), reason="raw ICMP sockets need root or CAP_NET_RAW")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_raw_socket_ping_of_loopback(host: str) -> None:
    assert_answered(poll(driver(host, "raw")))


@pytest.mark.skipif(not shutil.which("ping"), reason="no ping program installed")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ping_program_fallback_of_loopback(host: str) -> None:
    d = driver(host, "binary", spacing=0.2)
    assert_answered(poll(d))


def test_auto_picks_a_method_this_process_may_use() -> None:
    d = driver("127.0.0.1")
    assert_answered(poll(d))
    assert d.method in ("dgram", "raw", "binary")


def test_shipped_profile_pings_loopback() -> None:
    from agent.profiles import load_profile

    cls, profile = load_profile(ROOT / "firmware-profiles", "network/ping")
    connection = convert({"host": "127.0.0.1"}, PingConnection)
    d = cls(DeviceContext("p", 30.0, 5.0, 0), profile, connection)
    readings = poll(d)  # type: ignore[arg-type]
    assert_answered(readings)
    assert [m for m, _u in d.metrics()] == list(readings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "3 packets transmitted, 3 received, 0% packet loss, time 2003ms\n"
            "rtt min/avg/max/mdev = 0.031/0.044/0.052/0.009 ms\n",
            (3, 3, (0.031, 0.044, 0.052)),
        ),
        (  # busybox
            "3 packets transmitted, 2 packets received, 33% packet loss\n"
            "round-trip min/avg/max = 0.101/0.150/0.199 ms\n",
            (3, 2, (0.101, 0.150, 0.199)),
        ),
        ("2 packets transmitted, 0 received, 100% packet loss, time 1010ms\n", (2, 0, None)),
        (
            "5 packets transmitted, 1 received, +4 errors, 80% packet loss\n"
            "rtt min/avg/max/mdev = 1.000/1.000/1.000/0.000 ms",
            (5, 1, (1.0, 1.0, 1.0)),
        ),
    ],
)
def test_ping_program_output_is_parsed(text: str, expected: tuple[Any, ...]) -> None:
    assert parse_ping_output(text) == expected


def test_garbage_ping_output_is_refused() -> None:
    with pytest.raises(ValueError, match="transmitted"):
        parse_ping_output("ping: unknown host\n")


@pytest.mark.parametrize(
    ("connection", "key", "message"),
    [
        ({"host": "http://10.0.0.1/"}, "host", "not a host name"),
        ({"host": "10.0.0.1:80"}, "host", "not a host name"),
        ({"host": ""}, "host", "not a host name"),
        ({"host": "10.0.0.1", "count": 0}, "count", ">= 1"),
        ({"host": "10.0.0.1", "timeout": "0s"}, "timeout", "more than 0"),
        ({"host": "10.0.0.1", "method": "icmp"}, "method", "'icmp'"),
        ({"host": "10.0.0.1", "hots": "x"}, "hots", "unknown key"),
    ],
)
def test_bad_connections_are_refused(connection: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        convert(connection, PingConnection)
    loc, reason = error_location(caught.value)
    assert loc == (key,) and message in reason, (loc, reason)


def test_echoes_that_cannot_fit_in_the_poll_timeout_fail_clearly() -> None:
    d = driver("127.0.0.1", timeout=1.0, count=10, spacing=0.2)
    with pytest.raises(DriverError, match="raise the device's timeout"):
        asyncio.run(d.read(1.0))


def test_ipv6_host_in_brackets_is_accepted() -> None:
    assert convert({"host": "[::1]"}, PingConnection).host == "::1"


# --- inside a private network namespace ------------------------------------------------------

NETNS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, socket, struct, threading, time
    from agent.drivers import DeviceContext, DriverError
    from agent.drivers.ping import PingConnection, PingDriver, PingProfile, checksum

    def sysctl(name, value):
        with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
            f.write(value)

    def poll(host, method, count=3, device_timeout=2.0, timeout=0.3):
        profile = PingProfile(driver="ping", count=count, spacing=0.02, timeout=timeout)
        d = PingDriver(DeviceContext("p", 10.0, device_timeout, 0), profile,
                       PingConnection(host=host, method=method))
        started = time.monotonic()
        samples = asyncio.run(d.read(1.0))
        return {"method": d.method, "elapsed": time.monotonic() - started,
                **{s.metric: [s.value, s.quality, s.error] for s in samples}}

    def responder(stop):
        # answers echo requests on 127.0.0.1 itself, mostly wrongly
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                packet, _ = sock.recvfrom(65535)
            except socket.timeout:
                continue
            icmp = packet[(packet[0] & 0x0F) * 4:]
            kind, _code, _sum, ident, seq = struct.unpack("!BBHHH", icmp[:8])
            if kind != 8:
                continue
            payload = icmp[8:]
            answers = {
                0: [(ident, seq, payload)] * 2,              # right, and a duplicate
                1: [(ident, seq, payload[:-1] + b"X")],        # payload changed
                2: [(ident, (seq + 1000) & 0xFFFF, payload)],  # a sequence never sent
                3: [((ident + 1) & 0xFFFF, seq, payload)],     # someone else's identifier
            }[seq % 4]
            for i, s, p in answers:
                header = struct.pack("!BBHHH", 0, 0, 0, i, s)
                header = struct.pack("!BBHHH", 0, 0, checksum(header + p), i, s)
                sock.sendto(header + p, ("127.0.0.1", 0))
        sock.close()

    os.system("ip link set lo up")
    sysctl("net.ipv4.ping_group_range", "0 2147483647")
    out = {"auto4": poll("127.0.0.1", "auto"), "auto6": poll("::1", "auto")}
    sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    sysctl("net.ipv6.icmp.echo_ignore_all", "1")
    for method in ("dgram", "raw", "binary"):
        out["silent-" + method] = poll("127.0.0.1", method, device_timeout=0.5, timeout=5.0)
    out["silent6-dgram"] = poll("::1", "dgram", device_timeout=0.5, timeout=5.0)
    stop = threading.Event()
    thread = threading.Thread(target=responder, args=(stop,))
    thread.start()
    time.sleep(0.05)
    try:
        for method in ("dgram", "raw"):
            # 8 requests, one per seq % 4 kind twice: only seq % 4 == 0 is a real answer
            out["forged-" + method] = poll("127.0.0.1", method, count=8, timeout=0.3)
    finally:
        stop.set()
        thread.join()
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def netns_results() -> dict[str, Any]:
    if not can_unshare():
        pytest.skip("needs root and `unshare --net` for a private network namespace")
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", NETNS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return results


@pytest.mark.parametrize("case", ["auto4", "auto6"])
def test_unprivileged_datagram_socket_is_preferred_where_allowed(
    netns_results: dict[str, Any], case: str
) -> None:
    result = netns_results[case]
    assert result["method"] == "dgram"
    assert result["loss_pct"] == [0.0, "good", None]
    assert result["rtt_avg_ms"][1] == "good"


@pytest.mark.parametrize("case", ["silent-dgram", "silent-raw", "silent-binary", "silent6-dgram"])
def test_no_answer_is_full_loss_and_no_rtt(netns_results: dict[str, Any], case: str) -> None:
    result = netns_results[case]
    assert result["loss_pct"] == [100.0, "good", None]
    assert result["up"][:2] == [0, "good"] and "no reply" in result["up"][2]
    for metric in ("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms"):
        assert result[metric][:2] == [None, "bad"]
    # the profile's 5s wait was cut to fit the device's 0.5s poll timeout (slack for slow CI)
    assert result["elapsed"] < 2.0


@pytest.mark.parametrize("method", ["dgram", "raw"])
def test_foreign_and_malformed_replies_are_ignored(
    netns_results: dict[str, Any], method: str
) -> None:
    result = netns_results[f"forged-{method}"]
    assert result["loss_pct"] == [75.0, "good", None]  # 2 of 8 answered correctly
    assert result["up"] == [1, "good", None]
