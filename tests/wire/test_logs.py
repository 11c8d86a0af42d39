"""``log.format`` text|json and journald detection (wire/logs.py), in both programs."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scripts.services import free_port
from wire.configfile import ConfigError
from wire.logs import journal_stream, setup_logging

ROOT = Path(__file__).resolve().parents[2]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def journal_of(path: Path) -> dict[str, str]:
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def emit(tmp_path: Path, fmt: str, environ: dict[str, str]) -> list[str]:
    path = tmp_path / f"{fmt}.log"
    with open(path, "w") as stream:
        setup_logging("INFO", fmt, stream, environ)  # type: ignore[arg-type]
        log = logging.getLogger("central.test")
        log.warning("river %s at %d cm", "ciliwung", 310)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("it broke")
        log.debug("not shown at INFO")
    return path.read_text().splitlines()


def test_text_has_a_timestamp_unless_stderr_is_the_journal(
    tmp_path: Path, restore_logging: None
) -> None:
    plain = emit(tmp_path, "text", {})
    assert STAMP.match(plain[0]) and plain[0].endswith(
        "WARNING central.test: river ciliwung at 310 cm"
    )
    assert len([line for line in plain if "not shown" in line]) == 0
    path = tmp_path / "text.log"
    path.touch()
    journal = emit(tmp_path, "text", journal_of(path))
    assert journal[0] == "<4>WARNING central.test: river ciliwung at 310 cm"
    assert journal[1] == "<3>ERROR central.test: it broke"
    assert all(line.startswith("<3>") for line in journal[2:])  # the traceback, line by line
    assert journal[-1] == "<3>RuntimeError: boom"


def test_json_is_one_object_per_line_with_the_traceback_inside(
    tmp_path: Path, restore_logging: None
) -> None:
    lines = emit(tmp_path, "json", {})
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first["level"] == "WARNING" and first["logger"] == "central.test"
    assert first["message"] == "river ciliwung at 310 cm"
    assert second["message"] == "it broke"
    assert second["exc"].startswith("Traceback") and second["exc"].endswith("RuntimeError: boom")


def test_journal_stream_of_another_file_is_not_the_journal(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.touch()
    with open(tmp_path / "mine", "w") as stream:
        assert not journal_stream(stream, journal_of(other))  # inherited by a redirected child
        assert journal_stream(stream, journal_of(tmp_path / "mine"))
        assert not journal_stream(stream, {"JOURNAL_STREAM": "garbage"})
        assert not journal_stream(stream, {})


def test_both_configs_take_log_format_and_name_a_bad_one(tmp_path: Path) -> None:
    from agent.config import load_config as load_agent
    from central.config import load_config as load_central

    agent = {"gateway": {"id": "gw-log-1", "site": "s"}, "log": {"format": "json"}}
    central = {"influx": {"database": "d"}, "log": {"format": "json", "level": "debug"}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(agent))
    (tmp_path / "central.yaml").write_text(yaml.safe_dump(central))
    assert load_agent(tmp_path / "agent.yaml").log.format == "json"
    assert load_central(tmp_path / "central.yaml").log.format == "json"
    central["log"]["format"] = "xml"
    (tmp_path / "central.yaml").write_text(yaml.safe_dump(central))
    with pytest.raises(ConfigError) as caught:
        load_central(tmp_path / "central.yaml")
    assert "log.format" in str(caught.value) and "json" in str(caught.value)


def test_running_agent_logs_json(tmp_path: Path) -> None:
    config = {
        "gateway": {"id": "gw-log-2", "site": "s"},
        "mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min": "1s"},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "log": {"format": "json"},
        "devices": [{"id": "c1", "profile": "simulated/counter", "interval": "100ms"}],
    }
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "agent.yaml")],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    # SIGTERM once it says it started (its handler is set by then): starting Python takes
    # a second on a quiet machine, many on a loaded one
    assert proc.stderr is not None
    first: list[str] = []
    guard = threading.Timer(60, proc.kill)
    guard.start()
    try:
        for line in proc.stderr:
            first.append(line)
            if "gw-log-2 started" in line:
                break
    finally:
        guard.cancel()
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    err = "".join(first) + rest
    assert proc.returncode == 0, err
    entries = [json.loads(line) for line in err.splitlines()]
    assert any(e["message"].startswith("agent gw-log-2 started") for e in entries)
    assert all("ts" in e and e["level"] in ("INFO", "WARNING", "ERROR") for e in entries)
