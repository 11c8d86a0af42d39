"""A local HTTP server that speaks InfluxDB 2's write API and records what it receives.

It checks each request against the v2 write API: ``POST /api/v2/write`` with
``org``, ``bucket`` and ``precision`` query parameters and an
``Authorization: Token <token>`` header; anything else is answered as InfluxDB 2
would (401, 404, 400) and counted as a protocol error.
"""

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class V2Recorder:
    def __init__(self, org: str, bucket: str, token: str) -> None:
        self.org, self.bucket, self.token = org, bucket, token
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.requests = 0
        self.fail_next = 0  # answer this many writes with 503 first
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if urlsplit(self.path).path in ("/ping", "/health"):
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_error(404)

            def do_POST(self) -> None:
                status, problem = recorder._check(self)
                if problem:
                    with recorder._lock:
                        recorder.errors.append(problem)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check(self, handler: BaseHTTPRequestHandler) -> tuple[int, str | None]:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        if parts.path != "/api/v2/write":
            return 404, f"wrong path {parts.path}"
        if handler.headers.get("Authorization") != f"Token {self.token}":
            return 401, "missing or wrong Authorization: Token header"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if query.get("org") != self.org or query.get("bucket") != self.bucket:
            return 404, f"wrong org/bucket {query}"
        if query.get("precision") != "ms":
            return 400, f"precision {query.get('precision')!r}, expected ms"
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.requests += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, None
            self.lines.extend(line for line in body.decode().split("\n") if line)
        return 204, None

    def start(self) -> "V2Recorder":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
