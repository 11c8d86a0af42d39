"""Loading a YAML config file into a pydantic model, shared by the three programs.

Errors name the file and the key (``agent.yaml: devices[0].interval: ...``).
Environment variables ``PANTAU_<KEY>__<SUBKEY>`` override keys, e.g.
``PANTAU_MQTT__PASSWORD``; they are applied only to keys the model knows.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

M = TypeVar("M", bound=BaseModel)

ENV_PREFIX = "PANTAU_"

SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|key|community|credential|^auth|^priv", re.I
)
"""Keys whose values are secrets: never shown in errors, logs or ``get-config``."""


class LogSection(BaseModel):
    """``log:`` in every program's config."""

    model_config = ConfigDict(extra="forbid")

    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return level


class ConfigError(Exception):
    """A config, profile or rules file that can't be used; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{where}: invalid YAML: {problem}"]) from None


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


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


def validation_problems(source: str, exc: ValidationError, loc_prefix: str = "") -> list[str]:
    """One line per error: ``<source>: <loc_prefix>.<key path>: <message> (got <value>)``."""
    problems = []
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if loc_prefix:
            loc = loc_prefix if loc == "<top level>" else f"{loc_prefix}.{loc}".replace(".[", "[")
        problems.append(f"{source}: {loc}: {describe_error(err)}")
    return problems


def env_overrides(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """``PANTAU_MQTT__PASSWORD=x`` → ``{"mqtt": {"password": "x"}}`` for known top keys."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path or path[0] not in model.model_fields:
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


def load_model(
    model: type[M],
    path: Path,
    environ: Mapping[str, str] | None = None,
    context: dict[str, Any] | None = None,
) -> M:
    """Read ``path``, apply ``PANTAU_`` overrides, validate; raises ConfigError."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of keys at the top level"])
    data = deep_merge(data, env_overrides(model, os.environ if environ is None else environ))
    ctx = {"config_dir": path.parent, **(context or {})}
    try:
        return model.model_validate(data, context=ctx)
    except ValidationError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None
