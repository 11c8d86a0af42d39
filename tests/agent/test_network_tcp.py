"""The tcp driver against real sockets on loopback: a listener, a closed port, an RTSP answerer."""

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import DeviceContext
from agent.drivers.tcp import TcpConnection, TcpDriver
from agent.profiles import load_profile
from scripts.services import free_port
from wire.structs import ValidationError, convert, error_location

PROFILES = Path(__file__).resolve().parents[2] / "firmware-profiles"


class Listener:
    """A TCP server in a thread; ``answer(request_bytes) -> reply_bytes | None``."""

    def __init__(self, answer: Callable[[bytes], bytes | None] | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with conn:
                if self.answer is None:
                    continue
                conn.settimeout(1.0)
                try:
                    request = conn.recv(4096)
                    reply = self.answer(request)
                    if reply:
                        conn.sendall(reply)
                        conn.recv(1)  # wait for the client to close
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def _make(answer: Callable[[bytes], bytes | None] | None = None) -> Listener:
        started.append(Listener(answer))
        return started[-1]

    yield _make
    for listener in started:
        listener.close()


def rtsp(request: bytes) -> bytes | None:
    if request.startswith(b"OPTIONS ") and b"RTSP/1.0\r\n" in request:
        cseq = request.split(b"CSeq: ")[1].split(b"\r\n")[0]
        return b"RTSP/1.0 200 OK\r\nCSeq: " + cseq + b"\r\nPublic: DESCRIBE, SETUP, PLAY\r\n\r\n"
    return b"HTTP/1.1 400 Bad Request\r\n\r\n"


def make(profile: str, connection: dict[str, Any], timeout: float = 2.0) -> TcpDriver:
    cls, parsed = load_profile(PROFILES, profile)
    assert cls is TcpDriver
    return TcpDriver(
        DeviceContext("cam-1", 60.0, timeout, 0), parsed, convert(connection, TcpConnection)
    )


def poll(driver: TcpDriver) -> dict[str, Any]:
    return {s.metric: s for s in asyncio.run(driver.read(1.0))}


def test_open_port_is_up_with_connect_time(listen: Callable[..., Listener]) -> None:
    server = listen()
    readings = poll(make("network/tcp-port", {"host": "127.0.0.1", "port": server.port}))
    assert readings["up"].value == 1 and readings["up"].error is None
    assert readings["connect_ms"].quality == "good"
    assert 0 <= readings["connect_ms"].value < 1000


def test_closed_port_is_down_and_says_refused() -> None:
    port = free_port()  # nothing listens there
    readings = poll(make("network/tcp-port", {"host": "127.0.0.1", "port": port}))
    assert readings["up"].value == 0 and readings["up"].quality == "good"
    assert readings["up"].error == f"127.0.0.1:{port}: Connection refused"
    assert readings["connect_ms"].quality == "bad"


def test_rtsp_profile_golden_camera_answers(listen: Callable[..., Listener]) -> None:
    """Profile network/tcp + a camera answering RTSP OPTIONS → up 1."""
    camera = listen(rtsp)
    readings = poll(make("network/tcp", {"host": "127.0.0.1", "port": camera.port}))
    assert readings["up"].value == 1, readings["up"].error
    assert [m for m in readings] == ["up", "connect_ms"]


def test_rtsp_profile_golden_wrong_service_is_down(listen: Callable[..., Listener]) -> None:
    """Profile network/tcp + something else on the port (a web server) → up 0, why."""
    web = listen(lambda _request: b"HTTP/1.1 400 Bad Request\r\n\r\n")
    readings = poll(make("network/tcp", {"host": "127.0.0.1", "port": web.port}))
    assert readings["up"].value == 0
    assert "did not match" in (readings["up"].error or "")
    assert "HTTP/1.1 400" in (readings["up"].error or "")
    assert readings["connect_ms"].quality == "good"  # the port did open


def test_silent_service_times_out_within_the_poll(listen: Callable[..., Listener]) -> None:
    mute = listen(lambda _request: None)  # accepts, reads, never answers
    driver = make("network/tcp", {"host": "127.0.0.1", "port": mute.port}, timeout=0.3)
    readings = poll(driver)
    assert readings["up"].value == 0
    assert "did not match" in (readings["up"].error or "")


def test_connection_overrides_send_and_expect(listen: Callable[..., Listener]) -> None:
    echo = listen(lambda request: b"+OK " + request)
    connection = {
        "host": "127.0.0.1",
        "port": echo.port,
        "send": "PING\\r\\n",  # escapes as written in single-quoted YAML
        "expect": r"^\+OK PING\r\n",
    }
    assert poll(make("network/tcp", connection))["up"].value == 1


@pytest.mark.parametrize(
    ("connection", "key", "message"),
    [
        ({"host": "10.0.0.1", "port": 0}, "port", ">= 1"),
        ({"host": "10.0.0.1", "port": 554, "expect": "("}, "expect", "invalid regular expression"),
        ({"host": "bad host", "port": 554}, "host", "not a host name"),
        ({"port": 554}, "host", "required key is missing"),
    ],
)
def test_bad_connections_are_refused(connection: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        convert(connection, TcpConnection)
    loc, reason = error_location(caught.value)
    assert loc == (key,) and message in reason, (loc, reason)


def test_no_port_anywhere_is_reported_as_down() -> None:
    readings = poll(make("network/tcp-port", {"host": "127.0.0.1"}))
    assert readings["up"].value == 0 and "no port" in (readings["up"].error or "")
