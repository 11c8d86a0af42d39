"""Annotation templates: ``"{device} at {site}: {value} cm"``, checked when the rules
load (an unknown field is an error then, never a crash when the alert fires)."""

import string
from collections.abc import Mapping
from typing import Any

_FORMATTER = string.Formatter()


def template_problems(text: str, allowed: frozenset[str]) -> list[str]:
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as exc:
        return [f"bad template: {exc} (write {{{{ and }}}} for literal braces)"]
    out = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name == "" or name.isdigit():
            out.append("a template field needs a name, e.g. {device}")
        elif name not in allowed:
            out.append(f"unknown field {{{name}}}; known: {', '.join(sorted(allowed))}")
        elif conversion not in (None, "s", "r"):
            out.append(f"bad conversion !{conversion} in {{{name}}}")
        elif spec and ("{" in spec):
            out.append(f"nested fields are not allowed in {{{name}}}")
    return out


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill a checked template; a value that doesn't fit its format spec is shown plainly."""
    out = []
    for literal, name, spec, conversion in _FORMATTER.parse(text):
        out.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None:
            value = ""
        if conversion == "r":
            value = repr(value)
        try:
            out.append(format(value, spec or ""))
        except (ValueError, TypeError):
            out.append(str(value))
    return "".join(out)


def show(value: Any) -> Any:
    """A reading's value as templates show it: 301.0 → 301, 300.5 stays."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value
