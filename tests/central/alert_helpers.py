"""Helpers for the alert tests: a real HTTP webhook receiver on a free loopback port,
a driven clock, configs and readings."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import wire
from central.alerts.service import AlertService
from central.config import CentralConfig
from wire.structs import convert

SECRET = "s3cret-for-tests"


class FakeTime:
    """The alert service's clock, moved by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A threaded http.server recording every POST. ``answer`` is an HTTP status to
    answer with, or ``"hang"`` (no answer until ``release()``); ``stop()`` takes it
    down (connections are refused) and ``start()`` brings it back on the same port."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.attempts = 0
        self.answer: int | str = 200
        self.body = b"ok"
        self.port = 0
        self._released = threading.Event()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._cond:
                    receiver.attempts += 1
                    answer = receiver.answer
                if answer == "hang":
                    receiver._released.wait(30)
                    return
                assert isinstance(answer, int)
                if 200 <= answer < 300:
                    with receiver._cond:
                        receiver.received.append(Received(self.path, dict(self.headers), body))
                        receiver._cond.notify_all()
                self.send_response(answer)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")
                self._cond.wait(left)
            return list(self.received)

    def statuses(self) -> list[tuple[str, str]]:
        """(status, level label or alertname) of every notification received, in order."""
        out = []
        for r in self.received:
            alert = r.json["alerts"][0]
            out.append(
                (alert["status"], alert["labels"].get("level", alert["labels"]["alertname"]))
            )
        return out


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config(
    tmp_path: Path,
    rules: Path | None,
    url: str,
    database: str | None = None,
    **alerts: Any,
) -> CentralConfig:
    """A config for an AlertService; ``database``: a PostgreSQL URL, or None for SQLite."""
    return convert(
        {
            "database": {"url": database},
            "influx": {"url": "http://127.0.0.1:9", "database": "unused"},
            "data_dir": str(tmp_path / "data"),
            "rules_file": str(rules) if rules else None,
            "webhooks": [{"name": "ops", "url": url, "secret": SECRET, "timeout": "2s"}],
            "alerts": {"evaluation_interval": "1s", **alerts},
            "api": {"external_url": "http://central.example:8080"},
        },
        CentralConfig,
    )


def telemetry(
    gateway: str,
    now: float,
    values: dict[str, Any],
    device: str = "river-1",
    site: str | None = "kota-a",
    quality: str = "good",
    seq: int = 1,
) -> wire.Telemetry:
    return wire.Telemetry(
        gateway=gateway,
        seq=seq,
        site=site,
        readings=[
            wire.Reading(
                device=device,
                metric=metric,
                value=None if quality == "bad" else value,
                ts=int(now * 1000),
                quality=quality,  # type: ignore[arg-type]
                error="timeout" if quality == "bad" else None,
            )
            for metric, value in values.items()
        ],
    )


def birth(
    gateway: str, now: float, devices: dict[str, str], site: str | None = "kota-a"
) -> wire.State:
    return wire.State(
        gateway=gateway,
        seq=0,
        status="online",
        ts=int(now * 1000),
        site=site,
        devices=[wire.DeviceInfo(id=d, profile=p, driver="simulated") for d, p in devices.items()],
    )


def death(gateway: str, now: float) -> wire.State:
    return wire.State(gateway=gateway, seq=0, status="offline", ts=int(now * 1000))


def step(service: AlertService, clock: FakeTime, seconds: float = 0.0) -> None:
    """Advance the clock, apply what is queued and the periodic checks, then deliver."""
    clock.advance(seconds)
    service.run_once()
    service.outbox.deliver_due()
