"""A gateway installs ``pantau[agent]`` only: nothing the agent imports may need the
server-side packages (FastAPI, uvicorn, the InfluxDB client, httpx), nor pydantic, which
would cost a Raspberry Pi ~13 MiB of memory for nothing (the agent's models are msgspec)."""

import tomllib
from pathlib import Path

from tests.agent.test_lean import run_python

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = (
    "fastapi",
    "uvicorn",
    "influxdb_client",
    "httpx",
    "starlette",
    "cryptography",
    "pydantic",
    "pydantic_core",
)

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"the agent must not import {{name}}")
sys.meta_path.insert(0, Block())
import pkgutil, agent, agent.drivers
modules = [m.name for m in pkgutil.walk_packages(agent.__path__, "agent.")]
modules = [m for m in modules if m != "agent.__main__"]  # that one runs the CLI
for name in modules:
    __import__(name)
from agent.drivers import REGISTRY, load_driver
for driver in REGISTRY:
    load_driver(driver)
print(len(modules))
"""


def test_agent_extra_lists_no_server_side_package():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = extras["agent"] + project["dependencies"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0].strip() for dep in deps}
    assert not names & {"fastapi", "uvicorn", "influxdb-client", "httpx", "cryptography"}
    assert "pydantic" not in names


def test_every_agent_module_and_driver_imports_without_server_side_packages():
    out = run_python(BLOCKER.format(blocked=set(SERVER_SIDE)))
    assert int(out[-1]) > 20  # really walked the package
