"""Write constraints.txt: every package pantau[agent,central,provisioning,dev] installs,
directly or not, pinned to the version installed in this environment.

    .venv/bin/python -m scripts.constraints           # rewrite constraints.txt
    .venv/bin/python -m scripts.constraints --check   # exit 1 if it would change

``make venv``, CI, ``deploy/install-central.sh`` and the gateway wheelhouse
(``pip wheel -c constraints.txt``) install with it, so a wheelhouse built next month
holds the same versions as the one tested today. After changing a dependency in
pyproject.toml: ``make venv`` (or ``pip install -e '.[dev]'``), then run this and
commit both files. The pins are for Python 3.11 (Debian 12, Raspberry Pi OS).
"""

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
PROJECT = "pantau"
EXTRAS = ("agent", "central", "provisioning", "dev")
HEADER = """\
# Pinned versions of everything pantau[agent,central,provisioning,dev] installs, for
# Python 3.11. Written by `python -m scripts.constraints` from a tested environment;
# used by make venv, CI, deploy/install-central.sh and gateway wheelhouses:
#   pip install -c constraints.txt '.[central]'
#   pip wheel -c constraints.txt --wheel-dir wheels '.[agent]'
"""


def _applies(req: Requirement, extra: str) -> bool:
    if req.marker is None:
        return True
    env = {**default_environment(), "extra": extra}
    return req.marker.evaluate(env)  # type: ignore[arg-type]


def closure(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """{canonical name: installed version} of what ``project[extras]`` pulls in."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(project, extras)]
    seen: set[tuple[str, str]] = set()
    while todo:
        name, wanted = todo.pop()
        for extra in ("", *wanted):
            if (canonicalize_name(name), extra) in seen:
                continue
            seen.add((canonicalize_name(name), extra))
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise SystemExit(
                    f"error: {name} is not installed here: run make venv first"
                ) from None
            for text in dist.requires or []:
                req = Requirement(text)
                if not _applies(req, extra):
                    continue
                key = canonicalize_name(req.name)
                if key != canonicalize_name(project):
                    found[key] = metadata.version(req.name)
                todo.append((req.name, tuple(sorted(req.extras))))
    return found


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.constraints", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if constraints.txt differs")
    args = parser.parse_args(argv)
    text = render(closure())
    current = CONSTRAINTS.read_text() if CONSTRAINTS.exists() else ""
    if args.check:
        if text != current:
            print(
                "constraints.txt differs from this environment: "
                "run .venv/bin/python -m scripts.constraints",
                file=sys.stderr,
            )
            return 1
        return 0
    CONSTRAINTS.write_text(text)
    print(f"wrote {CONSTRAINTS.name}: {text.count('==')} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
