"""A local HTTP server that speaks InfluxDB 2's query API and records what it receives.

``POST /api/v2/query?org=<org>`` with ``Authorization: Token <token>`` and a JSON
body (``Content-Type: application/json``) holding the Flux ``query``, its ``type``
and the CSV ``dialect`` (``header``, ``annotations`` naming ``datatype``, ``group``
and ``default``). Each request is checked as InfluxDB 2 would check it and
answered as InfluxDB 2 does (401 / 404 / 400 with a JSON ``{"code", "message"}``
body); anything wrong is also recorded in ``errors``. Valid queries are recorded in
``queries`` (the whole JSON body) and answered with whatever the test set through
``reply`` or ``reply_tables``, or by ``reply_with`` (a function of the Flux text, for
a page that sends several queries): it cannot run Flux, the test says what InfluxDB
would have computed.

``annotated_csv`` writes tables the way InfluxDB 2 does: CRLF line ends, a
``#datatype`` / ``#group`` / ``#default`` block and a header row whenever the schema
or the result changes (after an empty line), the result name in ``#default`` and
an empty ``result`` column in the records, table ids counted per result.
"""

import csv
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Table:
    """One Flux table: ``columns`` as (name, datatype, in group key), ``rows`` as text."""

    columns: list[tuple[str, str, bool]]
    rows: list[list[str]]
    result: str = "_result"


@dataclass
class Answer:
    status: int
    body: str
    content_type: str = "text/csv; charset=utf-8"
    extra_headers: dict[str, str] = field(default_factory=dict)


def annotated_csv(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    schema: tuple[Any, ...] | None = None
    table_ids: dict[str, int] = {}
    for table in tables:
        names = [name for name, _, _ in table.columns]
        this = (table.result, tuple(table.columns))
        if this != schema:
            if schema is not None:
                out.write("\r\n")
            writer.writerow(["#datatype", "string", "long"] + [t for _, t, _ in table.columns])
            writer.writerow(
                ["#group", "false", "false"] + [str(g).lower() for _, _, g in table.columns]
            )
            writer.writerow(["#default", table.result, ""] + [""] * len(names))
            writer.writerow(["", "result", "table", *names])
            schema = this
        table_id = table_ids.get(table.result, 0)
        table_ids[table.result] = table_id + 1
        for row in table.rows:
            assert len(row) == len(names), (row, names)
            writer.writerow(["", "", str(table_id), *row])
    return out.getvalue() + "\r\n"


def error_csv(message: str) -> str:
    """The error table InfluxDB 2 streams (HTTP 200) when a query fails mid-way: no
    result or table column, just ``error`` and ``reference``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(
        [
            ["#datatype", "string", "string"],
            ["#group", "true", "true"],
            ["#default", "", ""],
            ["", "error", "reference"],
            ["", message, ""],
        ]
    )
    return out.getvalue() + "\r\n"


def json_error(status: int, code: str, message: str) -> Answer:
    return Answer(status, json.dumps({"code": code, "message": message}), "application/json")


class V2QueryServer:
    def __init__(self, org: str, token: str) -> None:
        self.org, self.token = org, token
        self.queries: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._answer = Answer(200, "\r\n")
        self._responder: Callable[[str], Answer] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if urlsplit(self.path).path in ("/ping", "/health"):
                    self._send(Answer(204, "", "text/plain"))
                    return
                self._send(json_error(404, "not found", "path not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                answer, problem = server._check(self, body)
                if problem:
                    with server._lock:
                        server.errors.append(problem)
                self._send(answer)

            def _send(self, answer: Answer) -> None:
                data = answer.body.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in answer.extra_headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, answer: Answer) -> None:
        with self._lock:
            self._answer, self._responder = answer, None

    def reply_with(self, responder: Callable[[str], Answer]) -> None:
        """Answer each valid query with ``responder(flux)``."""
        with self._lock:
            self._responder = responder

    def reply_tables(self, tables: list[Table]) -> None:
        self.reply(Answer(200, annotated_csv(tables)))

    @property
    def flux(self) -> list[str]:
        with self._lock:
            return [q["query"] for q in self.queries]

    def _check(self, handler: BaseHTTPRequestHandler, raw: bytes) -> tuple[Answer, str | None]:
        parts = urlsplit(handler.path)
        if parts.path != "/api/v2/query":
            return json_error(404, "not found", "path not found"), f"wrong path {parts.path}"
        if handler.headers.get("Authorization") != f"Token {self.token}":
            problem = "missing or wrong Authorization: Token header"
            return json_error(401, "unauthorized", "unauthorized access"), problem
        content_type = handler.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip() != "application/json":
            problem = f"Content-Type {content_type!r}, expected application/json"
            return json_error(400, "invalid", problem), problem
        try:
            body = json.loads(raw)
        except ValueError:
            return json_error(400, "invalid", "failed to decode request body"), "body not JSON"
        if not isinstance(body, dict):
            return json_error(400, "invalid", "failed to decode request body"), "body not object"
        org = {k: v[0] for k, v in parse_qs(parts.query).items()}.get("org", body.get("org"))
        if org != self.org:
            message = f'organization name "{org}" not found'
            return json_error(404, "not found", message), f"wrong org {org!r}"
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            return json_error(400, "invalid", "query is empty"), "no query"
        if body.get("type", "flux") != "flux":
            return json_error(400, "invalid", "unsupported query type"), f"type {body['type']!r}"
        dialect = body.get("dialect") or {}
        annotations = set(dialect.get("annotations") or [])
        if dialect.get("header") is False or not {"datatype", "group", "default"} <= annotations:
            problem = f"dialect {dialect!r} lacks the header or annotations"
            return json_error(400, "invalid", problem), problem
        with self._lock:
            self.queries.append(body)
            answer, responder = self._answer, self._responder
        return (answer if responder is None else responder(query)), None

    def start(self) -> "V2QueryServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
