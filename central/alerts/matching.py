"""Which rules apply to what: shell-style globs on gateway, device, site, profile, metric."""

from dataclasses import dataclass
from fnmatch import fnmatchcase

from central.alerts.rules import Match


@dataclass(frozen=True)
class Where:
    """What is known about a reading's source; None = unknown."""

    gateway: str
    device: str | None = None
    site: str | None = None
    profile: str | None = None
    metric: str | None = None


def matches(match: Match, where: Where, ignore_metric: bool = False) -> bool:
    """Every glob the rule gives must match; a glob against an unknown value fails."""
    for key in ("gateway", "device", "site", "profile", "metric"):
        pattern = getattr(match, key)
        if pattern is None or (ignore_metric and key == "metric"):
            continue
        value = getattr(where, key)
        if value is None or not fnmatchcase(value, pattern):
            return False
    return True


def labels_match(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Silences and webhook routes: every ``label: glob`` must match the alert's labels."""
    return all(fnmatchcase(labels.get(k, ""), pattern) for k, pattern in matchers.items())
