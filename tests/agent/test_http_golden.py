"""Golden cases for the http driver's JSON points: a real HTTP server on a free loopback port
answers each poll with the case's body, the real Poller drives the real driver.

``latency_ms`` changes from run to run: it is checked to be a good number of
milliseconds, not compared, and left out of the expected readings.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.config import DeviceSection
from agent.devices import build_device
from tests.agent.conftest import case_profile, golden_cases, load_case, run_golden_polls


class Device:
    """A JSON status page on 127.0.0.1: ``answer`` is what the next GET gets."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, b"{}")
        self.requests: list[tuple[str, str]] = []  # (path, Accept header)
        device = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                device.requests.append((self.path, self.headers.get("Accept", "")))
                status, body = device.answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def json_device() -> Iterator[Device]:
    device = Device()
    yield device
    device.close()


def body(case_dir: Path, poll: dict[str, Any]) -> bytes:
    """The poll's answer: ``body`` (data sent as JSON), ``body_file`` or ``body_text``."""
    if "body_file" in poll:
        return (case_dir / poll["body_file"]).read_bytes()
    if "body_text" in poll:
        return str(poll["body_text"]).encode("utf-8")
    return json.dumps(poll["body"]).encode("utf-8")


@pytest.mark.parametrize(("case_dir", "transport"), golden_cases("http"))
def test_golden_case(
    no_leaked_threads: None, case_dir: Path, transport: str, json_device: Device
) -> None:
    case = load_case(case_dir)
    profiles_dir, profile = case_profile(case_dir, case)
    section = DeviceSection(
        id="dut",
        profile=profile,
        interval=300,
        timeout=float(case.get("timeout", 2.0)),
        connection={"url": json_device.url(case.get("url_path", "/api/status"))},
        settings=case.get("settings") or {},
    )
    device = build_device(section, profiles_dir, "case.yaml")

    def before(poll: dict) -> None:
        json_device.answer = (int(poll.get("status", 200)), body(case_dir, poll))

    def checked(samples: list[Any]) -> list[Any]:
        (latency,) = [s for s in samples if s.metric == "latency_ms"]
        assert latency.quality == "good" and latency.unit == "ms"
        assert isinstance(latency.value, float) and latency.value >= 0
        return [s for s in samples if s.metric != "latency_ms"]

    run_golden_polls(device, case_dir, case, before=before, samples_of=checked)
    assert len(json_device.requests) == len(case["polls"])
    assert {accept for _, accept in json_device.requests} == {"application/json"}
