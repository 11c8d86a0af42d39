"""Models for config files, profiles and payloads: msgspec Structs, validated on the way in.

Why msgspec and not pydantic on this side: a gateway is a Raspberry Pi, and importing
pydantic alone costs a Python process about 13 MiB more than msgspec does (measured in
docs/benchmarks.md). Central's HTTP API still uses pydantic, through FastAPI.

What this module adds to msgspec:

- :class:`Section`, the base of every config and profile section: unknown keys are errors,
  fields are keyword-only.
- Validated scalar types: any class with a ``parse(value)`` classmethod (``Duration``,
  :class:`Secret`, a driver's ``Host``...) is built by that method; a ``ValueError`` it
  raises becomes an error at that key. A ``Path`` is resolved against the config
  file's folder.
- :func:`convert` (data → model) and :func:`dump` (model → plain data, secrets hidden).
- :func:`problems`: an error as ``<file>: <key path>: <message> (got <value>)``.
"""

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    dataclass_transform,
    get_args,
    get_origin,
)

import msgspec

from wire.durations import Duration, format_duration

T = TypeVar("T")

REDACTED = "**redacted**"

SECRET_KEY = re.compile(
    r"password|passwd|passphrase|secret|token|key|community|credential|^auth|^priv", re.I
)
"""Keys whose values are secrets: never shown in errors, logs or ``get-config``."""

ValidationError = msgspec.ValidationError


class KeywordOnly(msgspec.StructMeta):
    """Fields are keyword-only in every subclass too (msgspec applies ``kw_only`` per
    class), so a required field may follow one with a default."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        kw.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, ns, **kw)


class FrozenKeywordOnly(KeywordOnly):
    """Keyword-only and immutable, in every subclass: for payload models."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        kw.setdefault("frozen", True)
        return super().__new__(mcls, name, bases, ns, **kw)


@dataclass_transform(kw_only_default=True, field_specifiers=(msgspec.field,))
class Section(msgspec.Struct, metaclass=KeywordOnly, forbid_unknown_fields=True):
    """A section of a config or profile file: unknown keys are errors."""


class Secret:
    """A password, token or key: its repr hides it; :meth:`get_secret_value` reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def parse(cls, value: Any) -> "Secret":
        # only a string: YAML reads an unquoted 012345 as the octal number 5349, so an
        # unquoted number would silently become a different secret
        if not isinstance(value, str):
            raise ValueError("expected a string: put the secret in quotes")
        if not value.strip():
            raise ValueError("must not be empty or only spaces")
        return cls(value)

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret_file(path: Path) -> str:
    """A secret kept in its own file (``password_file``, ``token_file``, ``secret_file``),
    stripped; ValueError when the file holds nothing but spaces."""
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"{path} is empty: it must hold the secret")
    return value


def check_secret_file(path: Path | None) -> None:
    """For ``__post_init__``: refuses a secret file that exists but is empty (one that is
    missing or unreadable is reported when it is used, e.g. by ``check``)."""
    if path is None:
        return
    try:
        read_secret_file(path)
    except OSError:
        pass


class Regex(str):
    """A regular expression that compiles (a profile's label pattern, an HTTP body check)."""

    @classmethod
    def parse(cls, value: Any) -> "Regex":
        if not isinstance(value, str):
            raise ValueError("expected a regular expression in quotes")
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(value)


def unique(key: str, what: str, values: Iterable[str]) -> None:
    """For ``__post_init__``: raises ``<key>: <what> 'x' is used twice`` at the first repeat."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{key}: {what} {value!r} is used twice")
        seen.add(value)


def _decode_hook(base_dir: Path | None) -> Callable[[type, Any], Any]:
    def hook(tp: type, value: Any) -> Any:
        if tp is Path:
            if not isinstance(value, str) or not value:
                raise ValueError("expected a path")
            path = Path(value)
            return path if base_dir is None or path.is_absolute() else base_dir / path
        parse = getattr(tp, "parse", None)
        if parse is None:
            raise NotImplementedError(f"no parse() for {tp!r}")
        return parse(value)

    return hook


def convert(data: Any, model: type[T], *, base_dir: Path | None = None, strict: bool = False) -> T:
    """``data`` (parsed YAML or JSON) as ``model``; raises :class:`ValidationError`.

    Relative paths are taken from ``base_dir`` (the config file's folder). Not strict by
    default, so ``"502"`` from an environment variable is a fine port number.
    """
    return msgspec.convert(data, model, strict=strict, dec_hook=_decode_hook(base_dir))


def plain(value: Any) -> Any:
    """A validated value (a ``GatewayId``, a ``Duration``, ``Statuses``) as the plain
    str, int, float or list it is made of: an ``enc_hook`` for msgspec."""
    for base in (str, int, float):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise NotImplementedError(f"cannot write {type(value).__name__}")


def _encode(value: Any) -> Any:
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Duration):
        return format_duration(value)
    return plain(value)


def dump(model: Any) -> Any:
    """``model`` as plain dicts, lists and scalars, under the file's key names
    (durations as ``"30s"``, paths as strings, secrets as ``**redacted**``)."""
    return msgspec.to_builtins(model, enc_hook=_encode)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[([^\]]*)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(.+)`")
_MISSING = re.compile(r"Object missing required field `(.+)`")


def error_location(exc: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """The key path and the message of a msgspec validation error."""
    match = _AT.match(str(exc))
    assert match is not None
    message, loc = match["msg"], _parse_path(match["path"] or "")
    if unknown := _UNKNOWN.fullmatch(message):
        return (*loc, unknown[1]), "unknown key"
    if missing := _MISSING.fullmatch(message):
        return (*loc, missing[1]), "required key is missing"
    return loc, message


def _parse_path(text: str) -> tuple[str | int, ...]:
    loc: list[str | int] = []
    for name, index, key in _STEP.findall(text):
        if name:
            loc.append(name)
        elif index:
            loc.append(int(index))
        elif key not in ("", "..."):
            loc.append(key.strip("'\""))
    return tuple(loc)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _value_at(data: Any, loc: tuple[str | int, ...]) -> tuple[bool, Any]:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_dict or in_list):
            return False, None
        data = data[part]
    return True, data


def _shows(message: str, value: Any) -> bool:
    """Whether ``message`` already quotes ``value`` (parse() errors often do)."""
    return re.search(rf"(?<![\w.]){re.escape(repr(value))}(?![\w.])", message) is not None


def _field_type(model: Any, loc: tuple[str | int, ...]) -> Any:
    """The declared type at ``loc`` inside ``model`` (None when it can't be followed)."""
    tp = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
            tp = fields.get(str(part))
        elif get_origin(tp) in (list, tuple) and get_args(tp):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict and len(get_args(tp)) == 2:
            tp = get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and ``X | None``."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        args = [a for a in get_args(tp) if a is not type(None)]
        if get_origin(tp) in (Union, UnionType) and len(args) == 1:
            tp = args[0]
            continue
        return tp


def problems(
    source: str,
    exc: ValidationError,
    data: Any,
    loc_prefix: str = "",
    model: type | None = None,
) -> list[str]:
    """The error as one line: ``<source>: <loc_prefix>.<key path>: <message> (got <value>)``.

    ``data`` is what was validated; the offending value is looked up in it, and hidden when
    its key looks like a secret. Given the ``model``, a bad choice lists the good ones.
    """
    loc, message = error_location(exc)
    if model is not None and message.startswith("Invalid enum value"):
        choices = _field_type(model, loc)
        if get_origin(choices) is Literal:
            message += f": expected one of {', '.join(map(str, get_args(choices)))}"
    found, value = _value_at(data, loc)
    if found and message not in ("unknown key", "required key is missing"):
        if any(SECRET_KEY.search(str(part)) for part in loc):
            message = f"{message} (value hidden)"
        elif (
            value is not None and not isinstance(value, dict | list) and not _shows(message, value)
        ):
            message = f"{message} (got {value!r})"
    where = format_loc(loc)
    if not loc and re.match(r"[A-Za-z_][\w.\[\]]*: ", message):
        return [f"{source}: {loc_prefix + '.' if loc_prefix else ''}{message}"]  # names its key
    if loc_prefix:
        where = loc_prefix if where == "<top level>" else f"{loc_prefix}.{where}".replace(".[", "[")
    return [f"{source}: {where}: {message}"]
