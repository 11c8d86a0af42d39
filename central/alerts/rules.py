"""The rules file: one pydantic model per rule kind, loaded with errors that name
the rule and the key (``rules.yaml: rules[2] (river-high).clear_below: ...``).

Kinds: ``threshold``, ``levels``, ``rate``, ``stale``, ``offline``, ``quality``.
See docs/alerts.md for every key.
"""

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from central.alerts.schedule import Schedule
from central.alerts.templates import template_problems
from central.durations import Duration
from wire.configfile import ConfigError, describe_error, format_loc, read_yaml

RuleName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
LabelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

# label names the engine sets itself; a rule's own ``labels`` may not override them
RESERVED_LABELS = frozenset({"alertname", "severity", "gateway", "site", "device", "metric"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """Shell-style globs (``river/*``, ``gw-0?``); every key given must match."""

    gateway: str | None = None
    device: str | None = None
    site: str | None = None
    profile: str | None = None
    metric: str | None = None


class RuleBase(_Strict):
    kind: str
    name: RuleName
    match: Match = Field(default_factory=Match)
    severity: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "warning"
    labels: dict[LabelName, str] = Field(default_factory=dict)
    annotations: dict[LabelName, str] = Field(default_factory=dict)

    # the kind's template fields, beyond the common ones
    fields: ClassVar[frozenset[str]] = frozenset()
    # what one incident is about: per gateway, per device or per device and metric
    scope: ClassVar[Literal["gateway", "device", "series"]] = "series"

    def problems(self) -> list[tuple[str, str]]:
        """Checks across keys: (key, message) pairs."""
        out = [
            (f"labels.{k}", "is set by pantau itself; choose another label name")
            for k in self.labels
            if k in RESERVED_LABELS
        ]
        allowed = TEMPLATE_FIELDS | self.fields
        for key, text in self.annotations.items():
            out += [(f"annotations.{key}", msg) for msg in template_problems(text, allowed)]
        return out


TEMPLATE_FIELDS = frozenset(
    {"rule", "severity", "gateway", "site", "device", "metric", "profile", "value", "since"}
)


class ThresholdRule(RuleBase):
    kind: Literal["threshold"]
    above: float | None = None
    below: float | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_: Duration = Field(default=0.0, alias="for")

    fields: ClassVar[frozenset[str]] = frozenset({"threshold"})

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if (self.above is None) == (self.below is None):
            out.append(("above", "give exactly one of 'above' or 'below'"))
        if self.above is not None:
            if self.clear_above is not None:
                out.append(("clear_above", "goes with 'below'; with 'above' use 'clear_below'"))
            if self.clear_below is not None and self.clear_below > self.above:
                out.append(("clear_below", f"must not be higher than above ({self.above:g})"))
        if self.below is not None:
            if self.clear_below is not None:
                out.append(("clear_below", "goes with 'above'; with 'below' use 'clear_above'"))
            if self.clear_above is not None and self.clear_above < self.below:
                out.append(("clear_above", f"must not be lower than below ({self.below:g})"))
        return out


class LevelsRule(RuleBase):
    """Ordered bands, lowest first: ``{waspada: 250, siaga: 300, awas: 350}``."""

    kind: Literal["levels"]
    levels: dict[LabelName, float] = Field(min_length=1)
    overrides: dict[str, dict[LabelName, float]] = Field(default_factory=dict)  # device glob →
    severities: dict[LabelName, str] = Field(default_factory=dict)  # level → severity
    hysteresis: float = Field(default=0.0, ge=0)
    for_: Duration = Field(default=0.0, alias="for")

    fields: ClassVar[frozenset[str]] = frozenset({"level", "threshold"})

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        out += _bands_problems("levels", self.levels)
        names = list(self.levels)
        for device, bands in self.overrides.items():
            if list(bands) != names:
                out.append(
                    (f"overrides.{device}", f"must give the levels {', '.join(names)} in order")
                )
            else:
                out += _bands_problems(f"overrides.{device}", bands)
        for level in self.severities:
            if level not in self.levels:
                out.append((f"severities.{level}", f"not a level; levels: {', '.join(names)}"))
        return out

    def bands(self, device: str) -> dict[str, float]:
        from fnmatch import fnmatchcase

        for pattern, bands in self.overrides.items():
            if fnmatchcase(device, pattern):
                return bands
        return self.levels

    def severity_of(self, level: str) -> str:
        return self.severities.get(level, self.severity)


def _bands_problems(key: str, bands: dict[str, float]) -> list[tuple[str, str]]:
    values = list(bands.values())
    if any(b <= a for a, b in itertools.pairwise(values)):
        return [(key, "levels must rise in the order written (lowest first)")]
    return []


class RateRule(RuleBase):
    """Change over ``window``: fires when the value rose by ``increase`` (or fell by
    ``decrease``) compared with the lowest (highest) value within the window."""

    kind: Literal["rate"]
    window: Duration
    increase: float | None = Field(default=None, gt=0)
    decrease: float | None = Field(default=None, gt=0)

    fields: ClassVar[frozenset[str]] = frozenset({"change", "window"})

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.increase is None and self.decrease is None:
            out.append(("increase", "give 'increase' or 'decrease' (or both)"))
        if self.window <= 0:
            out.append(("window", "must be longer than 0s"))
        return out


class StaleRule(RuleBase):
    kind: Literal["stale"]
    after: Duration
    schedule: Schedule | None = None

    fields: ClassVar[frozenset[str]] = frozenset({"after", "last_seen"})
    scope: ClassVar[Literal["gateway", "device", "series"]] = "device"


class OfflineRule(RuleBase):
    kind: Literal["offline"]
    after: Duration = 120.0
    for_: Duration = Field(default=0.0, alias="for")  # how long a death must last

    fields: ClassVar[frozenset[str]] = frozenset({"after", "last_seen", "reason"})
    scope: ClassVar[Literal["gateway", "device", "series"]] = "gateway"

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        for key in ("device", "metric", "profile"):
            if getattr(self.match, key) is not None:
                out.append(
                    (f"match.{key}", "offline rules are about gateways: match gateway or site")
                )
        return out


class QualityRule(RuleBase):
    kind: Literal["quality"]
    after: Duration = 0.0

    fields: ClassVar[frozenset[str]] = frozenset({"after", "error"})
    scope: ClassVar[Literal["gateway", "device", "series"]] = "device"


Rule = ThresholdRule | LevelsRule | RateRule | StaleRule | OfflineRule | QualityRule

KINDS: dict[str, type[RuleBase]] = {
    "threshold": ThresholdRule,
    "levels": LevelsRule,
    "rate": RateRule,
    "stale": StaleRule,
    "offline": OfflineRule,
    "quality": QualityRule,
}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    source: str = ""
    by_name: dict[str, Rule] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, rules: list[Rule], source: str = "") -> "RuleSet":
        return cls(tuple(rules), source, {r.name: r for r in rules})


_TOP_KEYS = {"rules"}
_NAME_OK = re.compile(r"^[^\x00-\x1f]{1,100}$")


def parse_rules(data: Any, source: str) -> RuleSet:
    """Validate already-parsed YAML; raises ConfigError listing every problem."""
    if data is None:
        data = {"rules": []}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping with a 'rules' list at the top level"])
    problems = [f"{source}: {key}: unknown key" for key in data if key not in _TOP_KEYS]
    items = data.get("rules", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ConfigError([*problems, f"{source}: rules: expected a list of rules"])
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{source}: rules[{i}]: expected a mapping of keys")
            continue
        name = item.get("name")
        where = f"{source}: rules[{i}]"
        if isinstance(name, str) and _NAME_OK.match(name):
            where += f" ({name})"
        kind = item.get("kind")
        model = KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(
                f"{where}.kind: expected one of {', '.join(KINDS)} (got {kind!r})"
                if kind is not None
                else f"{where}.kind: required key is missing"
            )
            continue
        try:
            rule = model.model_validate(item)
        except ValidationError as exc:
            problems += [_problem(where, err) for err in exc.errors()]
            continue
        problems += [f"{where}.{key}: {msg}" for key, msg in rule.problems()]
        if rule.name in seen:
            problems.append(f"{where}.name: duplicate of rules[{seen[rule.name]}]")
        seen.setdefault(rule.name, i)
        rules.append(rule)  # type: ignore[arg-type]
    if problems:
        raise ConfigError(problems)
    return RuleSet.of(rules, source)


def _problem(where: str, err: Any) -> str:
    loc = format_loc(tuple("for" if p == "for_" else p for p in err["loc"]))
    return f"{where}.{loc}: {describe_error(err)}"


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file; raises ConfigError naming rule and key."""
    return parse_rules(read_yaml(path), str(path))
