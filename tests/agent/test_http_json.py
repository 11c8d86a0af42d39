"""The http driver's JSON points: path syntax, value types, profile errors, and answers that
are not what the profile expects (too large, chunked, not JSON) from a real local server."""

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers import DeviceContext
from agent.drivers._jsonbody import PathError, find, steps, typed
from agent.drivers.http import HttpConnection, HttpDriver
from agent.profiles import default_profiles_dir, load_profile, parse_profile
from wire.configfile import ConfigError
from wire.structs import convert

PROFILE = "driver: http\npoints:\n  - {metric: level_cm, path: data.level, unit: cm}\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":  # {"data": {"level": 123}} in three chunks
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"data": ', b'{"level": 1', b"23}}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/until-close":  # no length: the body ends when the server closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"data": {"level": ' + b" " * 3000 + b"77}}")
            self.close_connection = True
            return
        bodies = {
            "/ok": b'\xef\xbb\xbf{"data": {"level": 42.5}}',  # with a UTF-8 byte order mark
            "/big": json.dumps({"data": {"level": 1, "pad": "x" * 5000}}).encode(),
            "/nan": b'{"data": {"level": NaN}}',
            "/deep": b"[" * 5000 + b"]" * 5000,
            "/huge-number": b'{"data": {"level": 1e400}}',
        }
        body = bodies.get(self.path, b"not found")
        self.send_response(200 if self.path in bodies else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def driver(tmp_path: Path, url: str, profile: str = PROFILE) -> HttpDriver:
    path = tmp_path / "json" / "level.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(profile, encoding="utf-8")
    cls, parsed = load_profile(tmp_path, "json/level")
    assert cls is HttpDriver
    return HttpDriver(
        DeviceContext("logger-1", 60.0, 3.0, 0), parsed, convert({"url": url}, HttpConnection)
    )


def poll(drv: HttpDriver, at: float = 1000.0) -> dict[str, Any]:
    async def _poll() -> list[Any]:
        await drv.open()
        try:
            return await drv.read(at)
        finally:
            await drv.close()

    return {s.metric: s for s in asyncio.run(_poll())}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.lanes[0].count", ["data", "lanes", 0, "count"]),
        ("$.data.lanes[-1]", ["data", "lanes", -1]),
        ("[0].value", [0, "value"]),
        ('["Vehicle count"].total', ["Vehicle count", "total"]),
        ('data["a.b"][2]', ["data", "a.b", 2]),
        ("$", []),
        ("ups.battery.charge_%", ["ups", "battery", "charge_%"]),
    ],
)
def test_path_syntax(path: str, expected: list[Any]) -> None:
    assert steps(path) == expected


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("a..b", "character 2"),
        (".a", "starts with a key"),
        ("a[x]", "character 2"),
        ("a[0", "character 2"),
        ("a b", "character 2"),
        ("$a", "after $"),
        ("data.lanes[0]count", "character 14"),
    ],
)
def test_bad_path_syntax_says_where(path: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        steps(path)


def test_typed_values() -> None:
    assert typed(12, "number") == 12 and typed(" 12.5 ", "number") == 12.5
    assert typed("-3e2", "number") == -300.0 and typed("7", "number") == 7
    assert typed(1, "bool") is True and typed(False, "bool") is False
    assert typed(2**64 - 1, "number") == float(2**64 - 1)  # wider than int64: a float
    for value, kind in [
        (True, "number"),
        ("12 cm", "number"),
        ("NaN", "number"),
        ("1e999", "number"),
        ("1" * 5000, "number"),  # past Python's int() digit limit: an error, not a crash
        (2, "bool"),
        ("true", "bool"),
        (3, "string"),
        (None, "string"),
        ({}, "number"),
    ]:
        with pytest.raises(PathError):
            typed(value, kind)  # type: ignore[arg-type]
    with pytest.raises(PathError, match=r"no key 'b' in a \(it has: c\)"):
        find({"a": {"c": 1}}, ["a", "b"])
    many = {f"k{i:02}": i for i in range(12)} | {"x" * 500: 0}
    with pytest.raises(PathError) as caught:
        find(many, ["b"])
    assert str(caught.value).endswith("k08, k09, ...)") and len(str(caught.value)) < 200


def test_value_scaled_with_unit_and_byte_order_mark(tmp_path: Path, server: str) -> None:
    profile = PROFILE.replace("unit: cm}", "unit: m, scale: 0.01, offset: 1}")
    readings = poll(driver(tmp_path, f"{server}/ok", profile))
    assert readings["up"].value == 1
    level = readings["level_cm"]
    assert level.quality == "good" and level.unit == "m"
    assert level.value == pytest.approx(42.5 * 0.01 + 1)


@pytest.mark.parametrize("where", ["/chunked", "/until-close"])
def test_chunked_and_unsized_bodies_are_read_whole(tmp_path: Path, server: str, where: str) -> None:
    readings = poll(driver(tmp_path, server + where))
    assert readings["level_cm"].quality == "good", readings["level_cm"].error
    assert readings["level_cm"].value == (123 if where == "/chunked" else 77)


@pytest.mark.parametrize("where", ["/big", "/chunked", "/until-close"])
def test_body_larger_than_max_body_is_bad_not_cut(tmp_path: Path, server: str, where: str) -> None:
    readings = poll(driver(tmp_path, server + where, PROFILE + "max_body: 20\n"))
    assert readings["up"].value == 1  # the check itself is fine
    level = readings["level_cm"]
    assert level.quality == "bad" and level.value is None
    assert level.error == "data.level: the answer is larger than max_body (20 bytes)"


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("/nan", "data.level: the answer is not JSON (JSON is malformed"),
        ("/deep", "data.level: the answer is not JSON we can read (nested too deep)"),
        ("/huge-number", "data.level: the answer is not JSON (Number out of range"),
        ("/missing", "data.level: status 404 is not 2xx or 3xx"),
    ],
)
def test_answers_that_give_no_value_are_bad_readings(
    tmp_path: Path, server: str, where: str, words: str
) -> None:
    readings = poll(driver(tmp_path, server + where))
    level = readings["level_cm"]
    assert level.quality == "bad" and level.value is None
    assert (level.error or "").startswith(words), level.error


def test_unreachable_device_makes_every_point_bad(tmp_path: Path) -> None:
    from scripts.services import free_port

    readings = poll(driver(tmp_path, f"http://127.0.0.1:{free_port()}/"))
    assert readings["up"].value == 0
    assert readings["level_cm"].quality == "bad" and "refused" in (readings["level_cm"].error or "")


def test_declared_types_reach_the_birth_message(tmp_path: Path) -> None:
    profile = (
        "driver: http\npoints:\n"
        "  - {metric: level_cm, path: level}\n"
        "  - {metric: pump_on, path: pump, type: bool}\n"
        "  - {metric: station, path: name, type: string}\n"
        "  - {metric: tips, path: rain.tips, counter: {total_metric: rain_mm, per_count: 0.2,"
        " moved_metric: rain_moved_mm}}\n"
    )
    drv = driver(tmp_path, "http://127.0.0.1/", profile)
    assert drv.value_types() == {
        "up": "number",
        "status": "number",
        "latency_ms": "number",
        "level_cm": "number",
        "pump_on": "bool",
        "station": "string",
        "tips": "number",
        "rain_mm": "number",
        "rain_moved_mm": "number",
    }


@pytest.mark.parametrize(
    ("points", "problem"),
    [
        ("  - {metric: a, path: 'data..level'}\n", "points[0].path: 'data..level': cannot read"),
        ("  - {metric: a, path: ''}\n", "points[0].path: expected a path"),
        ("  - {metric: a, path: x, type: float}\n", "points[0].type: Invalid enum value 'float'"),
        ("  - {metric: a, path: x, type: bool, scale: 2}\n", "points[0]: scale: only for type"),
        ("  - {metric: a, path: x, counter: {total_metric: t}, scale: 2}\n", "per_count"),
        ("  - {metric: up, path: x}\n", "points[0]: metric 'up' already used by the http check"),
        (
            "  - {metric: a, path: x}\n  - {metric: b, path: y, counter: {total_metric: a}}\n",
            "points[1]: metric 'a' already used by points[0]",
        ),
        ("  - {metric: a, path: x, pth: y}\n", "points[0].pth: unknown key"),
    ],
)
def test_bad_points_name_file_and_key(tmp_path: Path, points: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("driver: http\npoints:\n" + points, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_profile(path)
    (line,) = caught.value.problems
    assert line.startswith(f"{path}: ") and problem in line, line


def test_head_cannot_read_points(tmp_path: Path) -> None:
    path = tmp_path / "head.yaml"
    path.write_text(PROFILE + "method: HEAD\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_profile(path)
    assert "method: points are read from the body: use GET" in caught.value.problems[0]


def test_bad_profile_error_names_the_device(tmp_path: Path) -> None:
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "level.yaml").write_text(
        "driver: http\npoints:\n  - {metric: a, path: 'x[one]'}\n", encoding="utf-8"
    )
    section = DeviceSection(
        id="awlr-batu-merah", profile="json/level", connection={"url": "http://127.0.0.1/"}
    )
    with pytest.raises(ConfigError) as caught:
        build_device(section, tmp_path, "agent.yaml", 3)
    (line,) = caught.value.problems
    assert line.startswith("agent.yaml: devices[3].profile: ")
    assert "level.yaml: points[0].path: 'x[one]'" in line
    assert line.endswith("[device awlr-batu-merah]")


def test_shipped_vehicle_counter_http_profile_loads() -> None:
    cls, profile = load_profile(default_profiles_dir(), "traffic/vehicle-counter-http")
    assert cls is HttpDriver and profile.method == "GET"
    drv = HttpDriver(
        DeviceContext("traffic-1", 300.0, 5.0, 0),
        profile,
        convert({"url": "http://10.20.0.32/api/counts"}, HttpConnection),
    )
    metrics = [m for m, _ in drv.metrics()]
    assert len(metrics) == len(set(metrics))
    for lane in range(1, 5):
        assert {f"lane{lane}_count", f"lane{lane}_vehicles", f"lane{lane}_vehicles_per_h"} <= set(
            metrics
        )
    # the same names as the Modbus counter's, so the same alert rules match
    _, modbus = load_profile(default_profiles_dir(), "traffic/vehicle-counter-4lane")
    modbus_metrics = {n for p in modbus.points for n in p.all_metric_names()}
    assert modbus_metrics <= drv.reported_metrics()
    assert drv.value_types()["loops_ok"] == "bool"
    assert drv.value_types()["firmware"] == "string"
