"""A webhook recipient for trying Pantau's alerts: prints every notification it gets
and whether its signature is right.

    python -m scripts.webhook_receiver --port 9000 --secret-file webhook.secret

It answers 204 to a notification signed with the secret and 401 to any other
(central then marks the delivery failed, see docs/alerts.md). A delivery id it has
already seen (a retry after a lost answer) is answered 204 and said to be ignored. With ``--record``
it also appends one JSON line per request (headers, raw body, verdict), so a
test can check what arrived.
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from central.alerts.signing import DELIVERY_HEADER, HEADER, verify

MAX_BODY = 1 << 20


def describe(payload: dict[str, Any]) -> str:
    """One line for a human: status, rule, level and the summary."""
    alert = (payload.get("alerts") or [{}])[0]
    labels = alert.get("labels") or {}
    summary = (alert.get("annotations") or {}).get("summary", "")
    level = f" [{labels['level']}]" if labels.get("level") else ""
    return f"{payload.get('status', '?')} {labels.get('alertname', '?')}{level}: {summary}"


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, secret: str, out: TextIO, record: Path | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.secret = secret
        self.out = out
        self.record = record
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first_time(self, delivery: str) -> bool:
        """True the first time a (signed) delivery id arrives: a retry of a notification
        we already handled carries the same id."""
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen.add(delivery)
            return True


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(413, "body missing or too large")
            return
        body = self.rfile.read(length)
        header = self.headers.get(HEADER, "")
        delivery = self.headers.get(DELIVERY_HEADER, "")
        signed = verify(self.server.secret, body, header, delivery, now=time.time())
        repeat = signed and not self.server.first_time(delivery)
        try:
            text = describe(json.loads(body))
        except (ValueError, AttributeError, IndexError, TypeError):
            text = f"not an alert payload ({len(body)} bytes)"
        stamp = time.strftime("%H:%M:%S")
        verdict = "signature ok" if signed else "BAD SIGNATURE, refused"
        if repeat:
            verdict += ", delivery seen before: ignored"
        event = self.headers.get("X-Pantau-Event", "?")
        print(f"{stamp} webhook ({event}, {verdict}): {text}", file=self.server.out, flush=True)
        if self.server.record is not None:
            line = {
                "received": time.time(),
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode("utf-8", errors="replace"),
                "signed": signed,
                "repeat": repeat,
            }
            with self.server.record.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(204 if signed else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per notification is printed above


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.webhook_receiver", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--secret-file", type=Path, required=True, help="the webhook's secret")
    parser.add_argument("--record", type=Path, help="append each request as a JSON line here")
    args = parser.parse_args(argv)
    try:
        secret = args.secret_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        print(f"error: --secret-file {args.secret_file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not secret:
        print(f"error: --secret-file {args.secret_file} is empty", file=sys.stderr)
        return 2
    try:
        server = Receiver(args.port, secret, sys.stdout, args.record)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"waiting for webhooks on http://127.0.0.1:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
