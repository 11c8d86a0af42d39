"""A small HTTP proxy in front of a real InfluxDB that refuses writes for a while, the way
a wrong token (401), a rate limit (429), a missing database (404) or an overloaded
server would: ``refuse(status, seconds, retry_after)`` queues refusal windows; everything
else (and /ping, /query) is passed through unchanged."""

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BODIES = {
    401: b'{"error":"authorization failed"}',
    403: b'{"error":"forbidden"}',
    404: b'{"error":"database not found: \\"x\\""}',
    413: b'{"error":"Request Entity Too Large"}',
    429: b'{"error":"too many requests"}',
    503: b'{"error":"overloaded"}',
}


class InfluxProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.windows: list[tuple[int, float, str | None]] = []  # (status, until, Retry-After)
        self.answered: Counter[int] = Counter()  # writes answered, by status
        self.max_body: int | None = None  # larger writes get 413, like max-body-size
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.startswith("/write"):
                    refusal = proxy._refusal()
                    if (
                        refusal is None
                        and proxy.max_body is not None
                        and len(body) > proxy.max_body
                    ):
                        refusal = (413, None)
                    if refusal is not None:
                        status, retry_after = refusal
                        self.send_response(status)
                        if retry_after is not None:
                            self.send_header("Retry-After", retry_after)
                        data = BODIES.get(status, b'{"error":"refused"}')
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        proxy._count(status)
                        return
                self._forward(body)

            def _forward(self, body: bytes | None) -> None:
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as resp:
                        status, data, headers = resp.status, resp.read(), resp.headers
                except urllib.error.HTTPError as exc:
                    status, data, headers = exc.code, exc.read(), exc.headers
                self.send_response(status)
                for key in ("Content-Type", "X-Influxdb-Version"):
                    if headers.get(key):
                        self.send_header(key, headers[key])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if self.path.startswith("/write"):
                    proxy._count(status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "InfluxProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def refuse(self, status: int, seconds: float, retry_after: str | None = None) -> None:
        """Answer writes with ``status`` for ``seconds`` after the windows already queued."""
        with self._lock:
            start = max([time.monotonic(), *(until for _, until, _ in self.windows)])
            self.windows.append((status, start + seconds, retry_after))

    def _refusal(self) -> tuple[int, str | None] | None:
        now = time.monotonic()
        with self._lock:
            while self.windows and self.windows[0][1] <= now:
                self.windows.pop(0)
            if not self.windows:
                return None
            status, _, retry_after = self.windows[0]
            return status, retry_after

    def _count(self, status: int) -> None:
        with self._lock:
            self.answered[status] += 1
