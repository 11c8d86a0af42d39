"""Run the agent the way its systemd unit runs it, outside systemd.

The unit (deploy/systemd/pantau-agent.service) sets ``Environment=`` lines, among them
lean bytecode (``PYTHONOPTIMIZE=2``) cached under ``/var/cache/pantau-agent``. The
benchmarks and tests use the same lines, with the cache moved into their own work
folder, so what they measure is what a gateway runs.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "pantau-agent.service"
CACHE = "/var/cache/pantau-agent"


def unit_environment(cache_dir: Path, unit: Path = UNIT) -> dict[str, str]:
    """The unit's ``Environment=`` assignments, ``/var/cache/pantau-agent`` moved to
    ``cache_dir``."""
    env: dict[str, str] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition("=")
        if key != "Environment":
            continue
        for assignment in shlex.split(value):
            name, sep, setting = assignment.partition("=")
            if not sep:
                raise ValueError(f"{unit}: Environment={value}: {assignment!r} is not NAME=VALUE")
            env[name] = setting.replace(CACHE, str(cache_dir))
    return env


def pantau_agent(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``pantau-agent ARGS`` run by this Python from the repository, output captured;
    ``env`` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def warm(config: Path, env: dict[str, str], timeout: float = 120) -> None:
    """Fill the unit's bytecode cache as install.sh does: ``pantau-agent check --offline``
    imports everything ``run`` does."""
    result = pantau_agent("check", "--offline", "-c", str(config), env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"pantau-agent check --offline -c {config}: {result.stderr.strip()}")
