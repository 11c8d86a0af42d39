"""Values out of a JSON document: a small path syntax and the value types profiles declare.

A path names one value from the top of the document::

    data.lanes[0].count       key "data", key "lanes", first item, key "count"
    lanes[-1]                 the last item of the list under "lanes"
    ["Vehicle count"].total   a key with spaces, dots or brackets, in double quotes
    [0].value                 the first item of a document that is a list
    $                         the whole document (a device answering just 42)

A leading ``$.`` (as Home Assistant's ``json_attributes_path`` writes it) is allowed
and means nothing more. Keys are case-sensitive. Nothing else (wildcards, filters,
recursive descent) exists: one path, one value.

Types: ``number`` is a JSON number, or a string holding one (``"123"``, ``" 12.5 "``:
many devices quote their numbers); ``bool`` is ``true``/``false``, or the numbers 0
and 1; ``string`` is a JSON string. Anything else is an error naming the path and
what was found there; so is ``null``.
"""

import math
import re
from typing import Any, Literal

ValueKind = Literal["number", "bool", "string"]
Step = str | int  # a key, or a list index

MAX_INT = 2**63 - 1  # wider integers are sent as floats (readings carry int64)
_STEP = re.compile(
    r"""\.(?P<name>[^.\[\]"\s]+)      # .key
      | \[(?P<index>-?\d+)\]           # [0] [-1]
      | \["(?P<quoted>[^"]*)"\]        # ["any key"]
    """,
    re.VERBOSE,
)
_NUMBER = re.compile(r"\s*-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\s*")


class PathError(Exception):
    """The value isn't there, or isn't of the declared type."""


class JsonPath(str):
    """A path into a JSON document (module docstring), checked when the profile loads."""

    @classmethod
    def parse(cls, value: Any) -> "JsonPath":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a path into the JSON answer, e.g. data.lanes[0].count")
        steps(value)
        return cls(value)


def steps(path: str) -> list[Step]:
    """The keys and indexes of ``path``; ValueError saying where its syntax is wrong."""
    text = path.removeprefix("$")
    offset = len(path) - len(text)  # text[at] is path[at + offset]
    if not text:
        return []
    if text[0] not in ".[":
        if offset:
            raise ValueError(f"{path!r}: after $ comes .key or [index]")
        text, offset = "." + text, -1
    elif text[0] == "." and not offset:
        raise ValueError(f"{path!r}: a path starts with a key or [index], not '.'")
    found: list[Step] = []
    at = 0
    while at < len(text):
        match = _STEP.match(text, at)
        if match is None:
            col = max(at + offset, 0)
            raise ValueError(
                f"{path!r}: cannot read it from character {col + 1} ({path[col : col + 12]!r}); "
                'write key.key[0].key, or ["a key"] for a key with spaces or dots'
            )
        if match["name"] is not None:
            found.append(match["name"])
        elif match["index"] is not None:
            found.append(int(match["index"]))
        else:
            found.append(match["quoted"])
        at = match.end()
    return found


def shown(path: list[Step]) -> str:
    """Steps written back as a path (for errors): ``data.lanes[4]``."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif re.fullmatch(r'[^.\[\]"\s]+', step):
            text += f".{step}" if text else step
        else:
            text += f'["{step}"]'
    return text or "$"


def what(value: Any) -> str:
    """How an error describes a JSON value: ``a string "abc"``, ``an object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"a string {text!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"


def find(document: Any, path: list[Step]) -> Any:
    """The value at ``path``; PathError saying which step failed and what was there."""
    value = document
    for i, step in enumerate(path):
        here = shown(path[:i]) if i else "the answer"
        if isinstance(step, int):
            if not isinstance(value, list):
                raise PathError(f"{here} is {what(value)}, not a list")
            if not -len(value) <= step < len(value):
                raise PathError(f"{here} has {len(value)} items, no [{step}]")
            value = value[step]
        else:
            if not isinstance(value, dict):
                raise PathError(f"{here} is {what(value)}, not an object")
            if step not in value:
                keys = [k if len(k) <= 40 else k[:37] + "..." for k in sorted(value)[:10]]
                listed = ", ".join(keys) + (", ..." if len(value) > 10 else "")
                raise PathError(f"no key {step!r} in {here} (it has: {listed or 'none'})")
            value = value[step]
    return value


def typed(value: Any, kind: ValueKind) -> int | float | bool | str:
    """``value`` as the declared type; PathError when it isn't one."""
    if value is None:
        raise PathError("the device sent null (no value)")
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value)
    elif isinstance(value, str) and len(value) <= 100 and _NUMBER.fullmatch(value):
        text = value.strip()
        return _number(float(text) if any(c in text for c in ".eE") else int(text))
    expected = {"number": "a number", "bool": "true/false (or 0/1)", "string": "a string"}[kind]
    raise PathError(f"expected {expected}, got {what(value)}")


def _number(value: int | float) -> int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise PathError(f"the number {value} is not finite")
    if isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
        return float(value)
    return value
