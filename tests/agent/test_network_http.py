"""The http driver against real local HTTP and HTTPS servers (http.server, a self-signed cert)."""

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.drivers import DeviceContext
from agent.drivers._netcert import CertError, not_after
from agent.drivers.http import HttpConnection, HttpDriver
from agent.profiles import load_profile
from scripts.services import free_port
from wire.structs import ValidationError, convert, error_location

PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"
CERT_DAYS = 30


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release: threading.Event

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b'{"status": "ok", "db": "up"}', Content_Type="application/json")
        elif self.path == "/fail":
            self._send(500, b"database down")
        elif self.path == "/moved":
            self._send(302, b"", Location="/health")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"Pantau ", b"siaga ", b"banjir"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            self.close_connection = True
        elif self.path == "/slow":
            self.release.wait(5)
            self._send(200, b"late")
        else:
            self._send(404, b"not here")


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        release = threading.Event()
        handler = type("H", (Handler,), {"release": release})
        self.release = release
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dt.datetime]:
    """A self-signed certificate for 127.0.0.1, valid for CERT_DAYS more days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pantau-test")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = now + dt.timedelta(days=CERT_DAYS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(expires)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem", expires


@pytest.fixture(scope="module")
def http_server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


@pytest.fixture(scope="module")
def https_server(cert_files: tuple[Path, Path, dt.datetime]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_files[0], cert_files[1])
    server = Server(context)
    yield server
    server.close()


def make(
    connection: dict[str, Any], timeout: float = 3.0, profile: str = "network/http"
) -> HttpDriver:
    cls, parsed = load_profile(PROFILES, profile)
    assert cls is HttpDriver
    return HttpDriver(
        DeviceContext("app-1", 60.0, timeout, 0), parsed, convert(connection, HttpConnection)
    )


def poll(driver: HttpDriver, at: float = 1000.0) -> dict[str, Any]:
    async def _poll() -> list[Any]:
        await driver.open()
        try:
            return await driver.read(at)
        finally:
            await driver.close()

    return {s.metric: s for s in asyncio.run(_poll())}


def test_healthy_app_golden(http_server: Server) -> None:
    """Profile network/http + an app answering 200 with a JSON body → up 1."""
    driver = make({"url": http_server.url("/health"), "body_regex": r'"status":\s*"ok"'})
    readings = poll(driver)
    assert [m for m in readings] == ["up", "status", "latency_ms"]
    assert readings["up"].value == 1 and readings["up"].error is None
    assert readings["status"].value == 200
    assert 0 < readings["latency_ms"].value < 3000 and readings["latency_ms"].unit == "ms"


def test_body_that_does_not_match_is_down(http_server: Server) -> None:
    readings = poll(make({"url": http_server.url("/health"), "body_regex": '"db": "down"'}))
    assert readings["up"].value == 0
    assert readings["up"].error == 'body does not match \'"db": "down"\''
    assert readings["status"].value == 200


def test_server_error_is_down_with_the_status(http_server: Server) -> None:
    readings = poll(make({"url": http_server.url("/fail")}))
    assert readings["up"].value == 0 and "status 500" in (readings["up"].error or "")
    assert readings["status"].value == 500 and readings["status"].quality == "good"
    assert readings["latency_ms"].quality == "good"


def test_expected_status_can_be_anything(http_server: Server) -> None:
    assert poll(make({"url": http_server.url("/fail"), "expect_status": 500}))["up"].value == 1
    moved = poll(make({"url": http_server.url("/moved"), "expect_status": [200]}))
    assert moved["up"].value == 0 and moved["status"].value == 302  # redirects are not followed
    assert poll(make({"url": http_server.url("/moved")}))["up"].value == 1  # 3xx by default


def test_chunked_body_is_reassembled_for_the_regex(http_server: Server) -> None:
    readings = poll(make({"url": http_server.url("/chunked"), "body_regex": "siaga banjir$"}))
    assert readings["up"].value == 1, readings["up"].error


def test_connection_refused_is_down_and_every_figure_bad() -> None:
    port = free_port()
    readings = poll(make({"url": f"http://127.0.0.1:{port}/"}))
    assert readings["up"].value == 0 and readings["up"].quality == "good"
    assert readings["up"].error == f"127.0.0.1:{port}: Connection refused"
    assert readings["status"].quality == "bad" and readings["latency_ms"].quality == "bad"


def test_not_http_is_down_with_a_clear_reason(http_server: Server) -> None:
    readings = poll(make({"url": http_server.url("/garbage")}))
    assert readings["up"].value == 0
    assert (readings["up"].error or "").startswith("bad answer: not an HTTP answer")


def test_slow_app_is_down_before_the_poll_times_out(http_server: Server) -> None:
    started = time.monotonic()
    try:
        readings = poll(make({"url": http_server.url("/slow")}, timeout=0.4))
    finally:
        http_server.release.set()  # let the held request finish
    assert time.monotonic() - started < 2.0  # the server holds the answer for 5s
    assert readings["up"].value == 0 and "within 0.36s" in (readings["up"].error or "")


def test_https_self_signed_without_verification_golden(
    https_server: Server, cert_files: tuple[Path, Path, dt.datetime]
) -> None:
    at = time.time()
    readings = poll(make({"url": https_server.url("/health"), "verify_tls": False}), at=at)
    assert readings["up"].value == 1 and readings["status"].value == 200
    expected = (cert_files[2].timestamp() - at) / 86400
    assert readings["cert_days_left"].value == pytest.approx(expected, abs=0.01)
    assert CERT_DAYS - 1 < readings["cert_days_left"].value <= CERT_DAYS


def test_https_self_signed_with_verification_is_down(https_server: Server) -> None:
    readings = poll(make({"url": https_server.url("/health")}))
    assert readings["up"].value == 0
    assert (readings["up"].error or "").startswith("TLS: ")
    assert "self-signed" in (readings["up"].error or "") or "verify" in (readings["up"].error or "")
    assert readings["cert_days_left"].quality == "bad"


def test_https_trusting_the_sites_own_ca_file(
    https_server: Server, cert_files: tuple[Path, Path, dt.datetime]
) -> None:
    readings = poll(make({"url": https_server.url("/health"), "ca_file": str(cert_files[0])}))
    assert readings["up"].value == 1, readings["up"].error
    assert readings["cert_days_left"].quality == "good"


def test_certificate_expiry_is_read_from_der(cert_files: tuple[Path, Path, dt.datetime]) -> None:
    cert = x509.load_pem_x509_certificate(cert_files[0].read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert not_after(der) == cert_files[2]
    with pytest.raises(CertError):
        not_after(der[:40])
    with pytest.raises(CertError):
        not_after(b"\x02\x01\x00")


@pytest.mark.parametrize(
    ("connection", "key", "message"),
    [
        ({"url": "ftp://example.org/"}, "url", "expected http"),
        ({"url": "http:///path"}, "url", "expected http"),
        ({"url": "http://127.0.0.1:99999/"}, "url", "bad port"),
        ({"url": "http://a b/"}, "url", "spaces"),
        ({"url": "http://user:pw@host/"}, "url", "credentials"),
        ({"url": "http://h/", "expect_status": 999}, "expect_status", "not an HTTP status"),
        ({"url": "http://h/", "expect_status": [200, "ok"]}, "expect_status", "'ok'"),
        ({"url": "http://h/", "body_regex": "(unclosed"}, "body_regex", "invalid regular"),
    ],
)
def test_bad_connections_are_refused(connection: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        convert(connection, HttpConnection)
    loc, reason = error_location(caught.value)
    assert loc == (key,) and message in reason, (loc, reason)


@pytest.mark.parametrize(("written", "codes"), [(200, [200]), ([200, 301], [200, 301])])
def test_expect_status_is_one_code_or_a_list(written: Any, codes: list[int]) -> None:
    connection = convert({"url": "http://h/", "expect_status": written}, HttpConnection)
    assert connection.expect_status == codes
