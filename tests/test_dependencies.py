"""Dependencies: every declared one is used, and constraints.txt pins what is installed."""

import ast
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import constraints

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "central", "provisioning", "wire")
# used without an import of their own in our code, and why
INDIRECT = {
    "pillow": "qrcode draws the PNG labels with it",
}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        if extra != "dev":
            reqs += items
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def imported_distributions() -> set[str]:
    """Distributions whose modules agent/, central/, provisioning/ or wire/ import."""
    modules: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module.split(".")[0])
    owners = metadata.packages_distributions()
    return {canonicalize_name(d) for m in modules for d in owners.get(m, [])}


def test_every_declared_dependency_is_imported() -> None:
    used = imported_distributions() | set(INDIRECT)
    unused = sorted(set(declared()) - used)
    assert not unused, f"declared in pyproject.toml but imported nowhere: {unused}"
    assert "pyfatfs" not in declared()


def test_constraints_pin_the_installed_closure_within_the_declared_ranges() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    for name, req in declared().items():
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    # what this environment installed is what constraints.txt says (make venv installs
    # with it); after changing a dependency: python -m scripts.constraints
    assert constraints.closure() == pins, "run: .venv/bin/python -m scripts.constraints"
    assert constraints.main(["--check"]) == 0


def test_make_venv_and_the_wheelhouse_builders_use_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert '-c "$SRC/constraints.txt"' in (ROOT / "deploy/install-central.sh").read_text()
    assert '"-c", constraints' in (ROOT / "scripts/firstboot-check").read_text()
    assert "-c constraints.txt" in (ROOT / "docs/provisioning.md").read_text()
