"""The agent defers modules its libraries import but never use (agent/lean.py).

Each check runs in a fresh interpreter: what is imported is per process."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, tmp_path: Path | None = None) -> list[str]:
    path = f"{tmp_path}:{ROOT}" if tmp_path else str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_running_agent_does_not_load_urllib_request_http_or_email():
    out = run_python(
        "import sys\n"
        "from agent.lean import defer_unused_imports\n"
        "print(*defer_unused_imports())\n"
        "import agent.app, agent.probe, agent.drivers.modbus, paho.mqtt.client\n"
        "print(*(m in sys.modules for m in ('http.client', 'email', 'tempfile')))\n"
    )
    assert out == ["urllib.request", "False", "False", "False"]


def test_without_deferral_paho_loads_them_so_the_check_above_can_fail():
    out = run_python(
        "import sys, paho.mqtt.client\n"
        "print(*(m in sys.modules for m in ('http.client', 'email', 'tempfile')))\n"
    )
    assert out == ["True", "True", "True"]


def test_first_use_loads_the_real_module_for_every_way_of_reaching_it():
    out = run_python(
        "import sys\n"
        "from agent.lean import defer_unused_imports\n"
        "defer_unused_imports()\n"
        "import urllib.request\n"
        "from urllib import request as kept\n"
        "print('http.client' in sys.modules)\n"  # importing is not a use
        "print(isinstance(urllib.request.getproxies(), dict))\n"
        "real = sys.modules['urllib.request']\n"
        "print(type(real).__name__, urllib.request is real, 'http.client' in sys.modules)\n"
        "from urllib.request import Request\n"
        "print(kept.Request is Request is real.Request)\n"
        "print(hasattr(kept, 'proxy_bypass'), kept.urlopen is real.urlopen)\n"
    )
    assert out == ["False", "True", "module", "True", "True", "True", "True", "True"]


def test_nothing_deferred_when_pysocks_is_there_to_read_it(tmp_path):
    (tmp_path / "socks.py").write_text("HTTP, SOCKS4, SOCKS5 = 3, 1, 2\n")
    out = run_python(
        "import sys\n"
        "from agent.lean import defer_unused_imports\n"
        "print(len(defer_unused_imports()))\n"
        "import paho.mqtt.client\n"
        "print('http.client' in sys.modules)\n",
        tmp_path,
    )
    assert out == ["0", "True"]


def test_an_imported_or_missing_module_is_left_alone():
    out = run_python(
        "import sys, urllib.request\n"
        "from agent.lean import defer, Deferred\n"
        "print(defer('urllib.request'), defer('no_such_module_here'))\n"
        "print(isinstance(sys.modules['urllib.request'], Deferred))\n"
    )
    assert out == ["False", "False", "False"]


def test_a_failing_first_use_leaves_the_stand_in_to_try_again(tmp_path):
    package = tmp_path / "flaky"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "part.py").write_text(
        "import os\nif not os.path.exists(os.environ['FLAG']):\n    raise OSError('not yet')\n"
        "VALUE = 42\n"
    )
    flag = tmp_path / "flag"
    out = run_python(
        "import os, sys\n"
        f"os.environ['FLAG'] = {str(flag)!r}\n"
        "from agent.lean import defer, Deferred\n"
        "print(defer('flaky.part'))\n"
        "import flaky.part\n"
        "try:\n    flaky.part.VALUE\n"
        "except OSError as exc:\n    print(exc.args[0].replace(' ', '-'))\n"
        "print(isinstance(sys.modules['flaky.part'], Deferred))\n"
        "open(os.environ['FLAG'], 'w').close()\n"
        "print(flaky.part.VALUE)\n",
        tmp_path,
    )
    assert out == ["True", "not-yet", "True", "42"]
