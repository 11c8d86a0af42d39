"""Can a rule ever match? The metrics each firmware profile reports, read from the
profile files alone, for ``pantau-central rules check``.

Central does not load the agent's drivers (their protocol libraries are not installed
next to central): a profile's metrics are the values of every ``metric`` key and of
every ``*_metric`` key (a counter's ``total_metric`` and ``rate_metric``) in the file,
plus what a driver reports by itself (``ping``: ``up``, ``loss_pct``, ...), listed in
:data:`DRIVER_METRICS`. ``tests/central/test_rules_check.py`` keeps that table equal
to the drivers' own lists.
"""

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from central.alerts.rules import OfflineRule, Rule
from wire.configfile import ConfigError, read_yaml

# readings a driver produces whatever its profile says
DRIVER_METRICS: dict[str, frozenset[str]] = {
    "ping": frozenset({"loss_pct", "up", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms"}),
    "tcp": frozenset({"up", "connect_ms"}),
    "http": frozenset({"up", "status", "latency_ms", "cert_days_left"}),
}


@dataclass(frozen=True)
class Profile:
    name: str  # river/radar-level-abcd
    path: Path
    metrics: frozenset[str]


def _declared(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if (key == "metric" or str(key).endswith("_metric")) and isinstance(value, str):
                found.add(value)
            else:
                _declared(value, found)
    elif isinstance(node, list):
        for item in node:
            _declared(item, found)


def profile_metrics(path: Path) -> frozenset[str]:
    """Every metric the profile at ``path`` reports; raises ConfigError for a bad file."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with a 'driver' key"])
    found: set[str] = set()
    _declared(data, found)
    driver = data.get("driver")
    return frozenset(found | DRIVER_METRICS.get(driver if isinstance(driver, str) else "", set()))


def catalog(folders: list[Path]) -> tuple[dict[str, Profile], list[str]]:
    """Profiles by name from each folder (a later folder's file wins), and problems."""
    profiles: dict[str, Profile] = {}
    problems: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            problems.append(f"{folder}: not a directory of profiles")
            continue
        for path in sorted(folder.rglob("*.yaml")):
            if path.name.startswith("_"):
                continue
            name = str(path.relative_to(folder).with_suffix(""))
            try:
                profiles[name] = Profile(name, path, profile_metrics(path))
            except ConfigError as exc:
                problems.extend(exc.problems)
    return profiles, problems


def unmatched(rule: Rule, profiles: dict[str, Profile]) -> str | None:
    """Why no profile can satisfy the rule's ``match`` (None when one can)."""
    if isinstance(rule, OfflineRule):
        return None  # about gateways, not devices
    profile_glob, metric_glob = rule.match.profile, rule.match.metric
    if profile_glob is None and metric_glob is None:
        return None
    named = [
        p for p in profiles.values() if profile_glob is None or fnmatchcase(p.name, profile_glob)
    ]
    if not named:
        return f"no profile is named like {profile_glob!r}"
    if metric_glob is None or any(fnmatchcase(m, metric_glob) for p in named for m in p.metrics):
        return None
    where = f"profile matching {profile_glob!r}" if profile_glob else "profile"
    return f"no {where} reports a metric matching {metric_glob!r}"
