"""Loading a YAML config file into a model, shared by the three programs.

Errors name the file and the key (``agent.yaml: devices[0].interval: ...``).
Environment variables ``PANTAU_<KEY>__<SUBKEY>`` override keys, e.g.
``PANTAU_MQTT__PASSWORD``; they are applied only to keys the model knows.

Config files load into msgspec Structs (:mod:`wire.structs`). :func:`validation_problems`
formats a pydantic error the same way, for central's rules and provisioning's records.
"""

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from wire.structs import SECRET_KEY, Section, ValidationError, convert, format_loc, problems

if TYPE_CHECKING:
    import pydantic

M = TypeVar("M", bound=Section)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ENV_PREFIX = "PANTAU_"

__all__ = [
    "ENV_PREFIX",
    "SECRET_KEY",
    "ConfigError",
    "LogLevel",
    "LogSection",
    "deep_merge",
    "describe_error",
    "env_overrides",
    "format_loc",
    "load_model",
    "parse_yaml",
    "read_yaml",
    "validation_problems",
]


class LogLevel(str):
    """``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``, any case."""

    @classmethod
    def parse(cls, value: object) -> "LogLevel":
        level = str(value).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return cls(level)


class LogSection(Section):
    """``log:`` in every program's config."""

    level: LogLevel = LogLevel("INFO")
    format: Literal["text", "json"] = "text"  # json: one object per line (wire/logs.py)


class ConfigError(Exception):
    """A config, profile or rules file that can't be used; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def report(self) -> None:
        """Each problem on standard error as ``error: <problem>``, as every CLI shows them."""
        for problem in self.problems:
            print(f"error: {problem}", file=sys.stderr)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _duplicate_keys(node: yaml.Node, path: str, seen_nodes: set[int]) -> list[str]:
    """``<line>:<column>: <key path>: ...`` for every key given twice in one mapping
    (YAML's last-one-wins would silently drop the first value)."""
    if id(node) in seen_nodes:  # an alias of a node already walked
        return []
    seen_nodes.add(id(node))
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        keys: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                found += _duplicate_keys(value_node, path, seen_nodes)
                continue
            key = (key_node.tag, key_node.value)
            where = f"{path}.{key_node.value}" if path else key_node.value
            if key in keys:
                mark = key_node.start_mark
                found.append(
                    f":{mark.line + 1}:{mark.column + 1}: {where}: duplicate key "
                    f"(given twice in the same mapping; remove one)"
                )
            keys.add(key)
            found += _duplicate_keys(value_node, where, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{index}]", seen_nodes)
    return found


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as Python data; a syntax error or a key given twice in one mapping
    raises ConfigError naming ``source``, the line and the key."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(node, "", set())
        if duplicates:
            raise ConfigError([f"{source}{problem}" for problem in duplicates])
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}{where}: invalid YAML: {problem}"]) from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    """Every config, profile and rules file is read here (see :func:`parse_yaml`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return parse_yaml(text, str(path))


def describe_error(err: Any) -> str:
    """One pydantic error as ``<message> (got <value>)``, with secret values hidden."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    value = err.get("input")
    if isinstance(value, dict | list) or value is None:
        return msg
    if any(SECRET_KEY.search(str(part)) for part in err["loc"]):
        return f"{msg} (value hidden)"
    return f"{msg} (got {value!r})"


def validation_problems(
    source: str, exc: "pydantic.ValidationError", loc_prefix: str = ""
) -> list[str]:
    """One line per pydantic error: ``<source>: <loc_prefix>.<key path>: <message>``."""
    lines = []
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if loc_prefix:
            loc = loc_prefix if loc == "<top level>" else f"{loc_prefix}.{loc}".replace(".[", "[")
        lines.append(f"{source}: {loc}: {describe_error(err)}")
    return lines


def env_overrides(model: type[Section], environ: Mapping[str, str]) -> dict[str, Any]:
    """``PANTAU_MQTT__PASSWORD=x`` → ``{"mqtt": {"password": "x"}}`` for known top keys."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path or path[0] not in model.__struct_encode_fields__:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_model(model: type[M], path: Path, environ: Mapping[str, str] | None = None) -> M:
    """Read ``path``, apply ``PANTAU_`` overrides, validate; raises ConfigError.

    Relative paths in the file are taken from the file's own folder.
    """
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of keys at the top level"])
    data = deep_merge(data, env_overrides(model, os.environ if environ is None else environ))
    try:
        return convert(data, model, base_dir=path.parent)
    except ValidationError as exc:
        raise ConfigError(problems(str(path), exc, data, model=model)) from None
