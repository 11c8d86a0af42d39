"""Golden cases for serial-ascii sensors: lines written into a real pseudo-terminal.

A streaming sensor is played by a thread writing its line every 50 ms; a polled one
by a thread that answers only after it reads the profile's command.
"""

import os
import threading
from pathlib import Path

import pytest

from agent.config import DeviceSection
from agent.devices import build_device
from tests.agent.conftest import (
    PtyPort,
    case_profile,
    golden_cases,
    load_case,
    run_golden_polls,
)


class SensorPlayer:
    """Plays a sensor on the master side of a pty: streams ``payload`` or answers ``command``."""

    def __init__(self, port: PtyPort, command: bytes | None, period: float = 0.05) -> None:
        self.port = port
        self.command = command
        self.period = period
        self.payload = b""
        self._stop = threading.Event()
        os.set_blocking(port.fd, False)
        self._thread = threading.Thread(target=self._run, name="sensor-player", daemon=True)
        self._thread.start()

    def _send(self) -> None:
        try:
            self.port.write(self.payload)
        except (BlockingIOError, OSError):  # nobody reading: the line drops it, like RS-232
            pass

    def _run(self) -> None:
        heard = b""
        while not self._stop.is_set():
            if self.command is None:
                self._send()
                self._stop.wait(self.period)
                continue
            heard += self.port.read_available(self.period)
            if self.command in heard:
                heard = heard.split(self.command)[-1]
                self._send()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize(("case_dir", "transport"), golden_cases("serial"))
def test_golden_case(
    no_leaked_threads: None, case_dir: Path, transport: str, pty_port: PtyPort
) -> None:
    case = load_case(case_dir)
    command = case.get("answers")
    player = SensorPlayer(pty_port, command.encode("latin-1") if command else None)
    profiles_dir, profile = case_profile(case_dir, case)
    section = DeviceSection(
        id="dut",
        profile=profile,
        interval=60,
        timeout=float(case.get("timeout", 0.5)),
        connection={"port": pty_port.path, "baudrate": 9600},
        settings=case.get("settings") or {},
    )
    device = build_device(section, profiles_dir, "case.yaml")

    def before(poll: dict) -> None:
        player.payload = poll["sends"].encode("latin-1")

    try:
        run_golden_polls(device, case_dir, case, before=before)
    finally:
        player.stop()
