"""Values worked out on the gateway from a poll's readings and the device's own settings,
and events raised when a value moves sharply. Data in the profile, for every driver.

A garbage bin's ultrasonic sensor measures the distance down to the rubbish; how full
the bin is depends on the bin, so the profile asks each device for its depth::

    settings:                      # each device gives these under settings: in agent.yaml
      depth_cm: {description: sensor to the floor of the empty bin, min: 1}
    derived:
      - metric: fill_pct
        expr: (depth_cm - distance_cm) / depth_cm * 100
        min: 0                     # clamp
        max: 100
        unit: "%"
    events:
      - kind: pickup               # emitted on the events topic
        metric: fill_pct
        drop: 40                   # fell by 40 or more ...
        within: 30m                # ... below the highest value of the last 30 minutes

An expression uses numbers, + - * / ( ), min(), max(), abs() and names: metrics of the
same poll (a bad one makes the derived reading bad, naming it) and the device's
settings. It is parsed once when the config loads; nothing else is evaluated.
"""

import math
import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from msgspec import Meta

from wire import Duration
from wire.structs import Section

if TYPE_CHECKING:  # agent.drivers.base imports the specs below
    import ast

    from agent.drivers.base import EventOut, Sample

Name = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class Expression(str):
    """Arithmetic over names: parsed and checked when the profile loads."""

    @classmethod
    def parse(cls, value: Any) -> "Expression":
        import ast

        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected an expression, e.g. (depth_cm - distance_cm) / depth_cm")
        try:
            tree = ast.parse(value, mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"not an expression: {exc.msg}") from None
        _check(tree.body)
        return cls(value)

    def tree(self) -> "ast.expr":
        import ast

        return ast.parse(self, mode="eval").body

    def names(self) -> set[str]:
        import ast

        nodes = list(ast.walk(self.tree()))
        calls = {
            n.func.id for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        return {n.id for n in nodes if isinstance(n, ast.Name)} - calls


FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
BINARY: dict[str, Callable[[float, float], float]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mult": operator.mul,
    "Div": operator.truediv,
}


def _check(node: "ast.AST") -> None:
    import ast

    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return
    if isinstance(node, ast.Name):
        return
    if isinstance(node, ast.BinOp) and type(node.op).__name__ in BINARY:
        _check(node.left)
        _check(node.right)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check(node.operand)
        return
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and node.args
        and not node.keywords
    ):
        for arg in node.args:
            _check(arg)
        return
    raise ValueError(
        f"{ast.unparse(node)!r} is not allowed: use numbers, names, + - * / ( ), min, max, abs"
    )


def _evaluate(node: "ast.AST", names: Mapping[str, float]) -> float:
    import ast

    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]  # _check allowed numbers only
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.BinOp):
        op = BINARY[type(node.op).__name__]
        return op(_evaluate(node.left, names), _evaluate(node.right, names))
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, names)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return float(FUNCTIONS[node.func.id](*(_evaluate(a, names) for a in node.args)))


class SettingSpec(Section):
    description: str | None = None
    default: float | None = None  # None: every device must give it
    min: float | None = None
    max: float | None = None


class DerivedSpec(Section):
    metric: Name
    expr: Expression
    unit: str | None = None
    min: float | None = None  # the result is clamped to min..max
    max: float | None = None


class EventSpec(Section):
    kind: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    metric: Name
    drop: Annotated[float, Meta(gt=0)] | None = None  # fell by at least this ...
    rise: Annotated[float, Meta(gt=0)] | None = None  # ... or rose by at least this
    within: Duration | None = None  # compared with the extreme of this window (default: last)

    def __post_init__(self) -> None:
        if (self.drop is None) == (self.rise is None):
            raise ValueError("give exactly one of drop or rise")


class Derivation:
    """One device's derived values and events; feed it every poll's samples."""

    def __init__(
        self,
        derived: Iterable[DerivedSpec],
        events: Iterable[EventSpec],
        settings: Mapping[str, float],
    ) -> None:
        self.derived = [(spec, spec.expr.tree()) for spec in derived]
        self.events = list(events)
        self.settings = dict(settings)
        self._history: dict[int, deque[tuple[float, float]]] = {
            i: deque() for i in range(len(self.events))
        }

    def apply(self, samples: list["Sample"], at: float) -> tuple[list["Sample"], list["EventOut"]]:
        """The samples plus the derived ones, and the events this poll raised."""
        good = {
            s.metric: float(s.value)
            for s in samples
            if s.quality == "good"
            and isinstance(s.value, int | float)
            and not isinstance(s.value, bool)
        }
        bad = {s.metric: s.error or "bad reading" for s in samples if s.quality != "good"}
        out = list(samples)
        for spec, tree in self.derived:
            sample = self._derive(spec, tree, good, bad)
            out.append(sample)
            if sample.quality == "good" and isinstance(sample.value, float):
                good[spec.metric] = sample.value
            else:
                bad[spec.metric] = sample.error or "bad reading"
        events = []
        for index, event_spec in enumerate(self.events):
            event = self._event(index, event_spec, good.get(event_spec.metric), at)
            if event is not None:
                events.append(event)
        return out, events

    def _derive(
        self, spec: DerivedSpec, tree: "ast.AST", good: dict[str, float], bad: dict[str, str]
    ) -> "Sample":
        from agent.drivers.base import Sample

        names = {**self.settings, **good}
        missing = sorted(n for n in spec.expr.names() if n not in names)
        if missing:
            why = "; ".join(_why(n, bad.get(n, "no reading")) for n in missing)
            return Sample(spec.metric, None, spec.unit, quality="bad", error=why)
        try:
            value = _evaluate(tree, names)
        except (ZeroDivisionError, OverflowError, ValueError) as exc:
            return Sample(spec.metric, None, spec.unit, quality="bad", error=f"{spec.expr}: {exc}")
        if not math.isfinite(value):
            return Sample(
                spec.metric, None, spec.unit, quality="bad", error=f"{spec.expr}: {value}"
            )
        if spec.min is not None:
            value = max(value, spec.min)
        if spec.max is not None:
            value = min(value, spec.max)
        return Sample(spec.metric, value, spec.unit)

    def _event(
        self, index: int, spec: EventSpec, value: float | None, at: float
    ) -> "EventOut | None":
        from agent.drivers.base import EventOut

        if value is None:
            return None
        history = self._history[index]
        window = spec.within
        while history and (
            (window is not None and at - history[0][0] > window)
            or (window is None and len(history) > 1)
        ):
            history.popleft()
        event = None
        if history:
            if spec.drop is not None:
                before = max(v for _, v in history)
                moved = before - value
                limit = spec.drop
            else:
                before = min(v for _, v in history)
                moved = value - before
                limit = spec.rise or 0.0
            if moved >= limit:
                event = EventOut(
                    spec.kind,
                    round(at * 1000),
                    {"metric": spec.metric, "before": before, "after": value, "change": moved},
                )
                history.clear()  # one event per movement: the new level is the reference
        history.append((at, value))
        return event


def _why(name: str, error: str) -> str:
    return error if error.startswith(f"{name}:") else f"{name}: {error}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check(
    derived: list[DerivedSpec],
    events: list[EventSpec],
    declared: Mapping[str, SettingSpec],
    metrics: Iterable[str],
) -> list[str]:
    """Problems with the profile's derived values and events (names they can't know)."""
    known = set(metrics)
    problems = []
    for i, spec in enumerate(derived):
        unknown = sorted(n for n in spec.expr.names() if n not in known and n not in declared)
        if unknown:
            problems.append(
                f"derived[{i}].expr: {', '.join(unknown)}: not a metric of this profile nor a "
                f"setting (metrics: {', '.join(sorted(known))})"
            )
        if spec.metric in known:
            problems.append(f"derived[{i}].metric: {spec.metric!r} is already a metric")
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            problems.append(f"derived[{i}].min: more than max")
        known.add(spec.metric)
    for i, event in enumerate(events):
        if event.metric not in known:
            problems.append(f"events[{i}].metric: {event.metric!r} is not a metric of this profile")
    return problems


def device_settings(
    declared: Mapping[str, SettingSpec], given: Mapping[str, Any]
) -> tuple[dict[str, float], list[str]]:
    """The device's settings checked against the profile's: (values, problems)."""
    values: dict[str, float] = {}
    problems = []
    for name in given:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(f"settings.{name}: the profile has no such setting (it has: {known})")
    for name, spec in declared.items():
        raw = given.get(name, spec.default)
        if raw is None:
            what = f" ({spec.description})" if spec.description else ""
            problems.append(f"settings.{name}: required by the profile{what}")
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            problems.append(f"settings.{name}: expected a number (got {raw!r})")
            continue
        if spec.min is not None and raw < spec.min:
            problems.append(f"settings.{name}: must be at least {spec.min:g} (got {raw!r})")
            continue
        if spec.max is not None and raw > spec.max:
            problems.append(f"settings.{name}: must be at most {spec.max:g} (got {raw!r})")
            continue
        values[name] = float(raw)
    return values, problems


__all__ = ["Derivation", "DerivedSpec", "EventSpec", "Expression", "SettingSpec", "check"]
