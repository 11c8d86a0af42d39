"""InfluxDB line protocol, formatted directly (influxdb-client's ``Point`` is much slower:
see ``bench/lineprotocol.py``).

Schema: one point per reading::

    readings,device=<d>,gateway=<g>,site=<s> <metric>=<float> <ts ms>

Storage isolation: every field holds one type, whatever any gateway sends, so no
reading can make InfluxDB refuse another's (a field's type is fixed per shard by the
first point written). Numbers are always written as floats, so a metric that is an
integer in one reading and a float in the next never conflicts (integers beyond 2**53
lose precision); booleans are numbers too (1.0 / 0.0). Strings go to their own
measurement, ``readings_text`` (same tags, field named by the metric, always a
string). A value of another type than the gateway's profile declares (its birth
message says) is a bad reading. Bad-quality readings go to ``reading_errors`` (tag
``metric``, string field ``error``). Events: their numbers (bools as 1/0) in
``events`` (tag ``kind``; ``seq`` when there are none), their strings (nested values
as JSON) and ``error`` in ``events_text``. Health messages go to ``gateway_health``
(tags ``gateway``, ``site``; the vitals as float fields, plus ``devices`` and
``devices_failing``). docs/protocol.md shows the schema.

Escaping, as InfluxDB 1.x parses it (checked against the real server by
``tests/central/test_lineprotocol.py``):

- tag keys, tag values and field keys: ``,`` ``=`` and space get a backslash;
  other backslashes are literal. Line protocol has no way to write a newline in
  a tag, nor a backslash right before a space, comma, equals sign or the end of a
  name. Those are written so the line still parses, close to the original:
  newlines become spaces, such a backslash is stored doubled (``a\\,b`` →
  ``a\\\\,b``) and a trailing one becomes a space (``a\\`` → ``a ``). ``wire``
  forbids control characters in device and metric names.
- string field values: ``"`` and ``\\`` get a backslash; newlines are literal.
"""

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import wire

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " "})
_BACKSLASH_BEFORE_SPECIAL = re.compile(r"\\(?=[ ,=])")
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_EXACT = 2**53
HEALTH_MEASUREMENT = "gateway_health"
HEALTH_FIELDS = (
    "uptime_s",
    "cpu_temp_c",
    "load1",
    "mem_used_pct",
    "disk_free_mb",
    "buffer_depth",
    "buffer_oldest_age_s",
    "dropped",
)  # ints within: exact as floats, repr(float(i)) == f"{i}.0" (below 1e16)


def escape_tag(text: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces escaped."""
    if "\\" in text:
        text = _BACKSLASH_BEFORE_SPECIAL.sub(r"\\\\", text)  # keeps the line parseable
    out = text.translate(_TAG_ESCAPES)
    if out.endswith("\\"):
        out += " "  # a trailing backslash would escape the separator
    return out


def escape_measurement(text: str) -> str:
    return text.translate(_MEAS_ESCAPES)


def quote_string(text: str) -> str:
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def field_value(value: Any) -> str | None:
    """A field value in line protocol, or None when it can't be stored."""
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        return repr(number)
    if isinstance(value, str):
        return quote_string(value)
    return quote_string(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def tag_set(tags: dict[str, str | None]) -> str:
    """``,k=v,...`` sorted by key (InfluxDB's preferred order); empty values left out."""
    return "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)


class Encoder:
    """Formats validated wire messages as lines. Holds small caches of escaped names
    (device and metric names repeat in every batch); bounded, so a flood of new names
    costs only the escaping. ``wrong_type`` counts readings refused because their value
    is not of the type the gateway's profile declares."""

    _CACHE_MAX = 50_000

    def __init__(self, measurement: str = "readings") -> None:
        self.measurement = escape_measurement(measurement)
        errors = "reading_errors" if measurement == "readings" else f"{measurement}_errors"
        self.errors = escape_measurement(errors)
        self.text = escape_measurement(f"{measurement}_text")
        self.events = escape_measurement("events")
        self.health_measurement = HEALTH_MEASUREMENT
        self.events_text = escape_measurement("events_text")
        self.wrong_type = 0
        self._names: dict[str, str] = {}
        # (gateway, site) -> device -> metric -> the line's start ("" -> the device's)
        self._starts: dict[tuple[str, str | None], dict[str, dict[str, str]]] = {}

    def _escaped(self, name: str) -> str:
        out = self._names.get(name)
        if out is None:
            if len(self._names) >= self._CACHE_MAX:
                self._names.clear()
            out = self._names[name] = escape_tag(name)
        return out

    def telemetry(
        self,
        message: wire.Telemetry,
        site: str | None = None,
        declared: Mapping[str, Mapping[str, str]] | None = None,
    ) -> list[str]:
        """Lines for one telemetry message. ``site``: the gateway's site from the registry
        (the payload's is not used); ``declared``: device -> metric -> declared type."""
        # the hot path of ingest (one call per reading batch): per (gateway, site), per
        # device, a dict of metric → "readings,device=..,gateway=..,site=.. metric=",
        # kept across messages (a gateway sends the same names again and again)
        lines: list[str] = []
        append = lines.append
        esc = self._escaped
        devices = self._starts.get((message.gateway, site))
        if devices is None:
            if len(self._starts) >= self._CACHE_MAX // 10:
                self._starts.clear()
            devices = self._starts[(message.gateway, site)] = {}
        gateway = esc(message.gateway)
        site = esc(site) if site else ""
        suffix = f",gateway={gateway},site={site} " if site else f",gateway={gateway} "
        device_name = None
        starts: dict[str, str] = {}
        types: Mapping[str, str] | None = None
        for r in message.readings:
            if r.device != device_name:
                device_name = r.device
                cached = devices.get(device_name)
                if cached is None:
                    if len(devices) >= self._CACHE_MAX // 10:
                        devices.clear()
                    cached = devices[device_name] = {}
                    cached[""] = f"{self.measurement},device={esc(device_name)}{suffix}"
                starts = cached
                types = declared.get(device_name) if declared else None
            value = r.value
            error = r.error
            if r.quality == "good":
                cls = value.__class__
                if types is not None and not _fits(types.get(r.metric), cls):
                    self.wrong_type += 1
                    error = f"wrong type: declared {types.get(r.metric)}, got {_TYPE_OF[cls]}"
                elif cls is float:
                    if value - value == 0.0:  # type: ignore[operator]  # finite
                        start = starts.get(r.metric)
                        if start is None:
                            start = starts[r.metric] = f"{starts['']}{esc(r.metric)}="
                        append(f"{start}{value!r} {r.ts}")
                        continue
                elif cls is int and -_EXACT < value < _EXACT:  # type: ignore[operator]
                    start = starts.get(r.metric)
                    if start is None:
                        start = starts[r.metric] = f"{starts['']}{esc(r.metric)}="
                    append(f"{start}{value}.0 {r.ts}")  # == repr(float(value)), faster
                    continue
                elif cls is str:  # apart from the numbers: never a field type conflict
                    append(
                        f"{self.text},device={esc(r.device)}{suffix}{esc(r.metric)}="
                        f"{quote_string(value)} {r.ts}"  # type: ignore[arg-type]
                    )
                    continue
                elif value is not None:  # bool (1/0) or a huge int: a number
                    start = starts.get(r.metric)
                    if start is None:
                        start = starts[r.metric] = f"{starts['']}{esc(r.metric)}="
                    append(f"{start}{float(value)!r} {r.ts}")
                    continue
            error = error or ("no value" if r.quality == "good" else "bad quality")
            site_tag = f",site={site}" if site else ""
            append(
                f"{self.errors},device={esc(r.device)},gateway={gateway},"
                f"metric={esc(r.metric)}{site_tag} error={quote_string(error)} {r.ts}"
            )
        return lines

    def health(self, message: wire.Health, site: str | None = None) -> str:
        """``gateway_health,gateway=<g>,site=<s> uptime_s=..,buffer_depth=..,... <ts>``:
        the vitals the gateway sent (absent ones left out), and how many of its devices
        it reports failing (``devices_failing``) out of ``devices``. ``site``: the
        registry's (ingest passes it); the message's own when not given."""
        tags = tag_set({"gateway": message.gateway, "site": site or message.site})
        fields = [
            f"{name}={float(value)!r}"
            for name in HEALTH_FIELDS
            if (value := getattr(message, name)) is not None and math.isfinite(value)
        ]
        failing = sum(1 for d in message.devices.values() if d.status == "failing")
        fields.append(f"devices={float(len(message.devices))!r}")
        fields.append(f"devices_failing={float(failing)!r}")
        return f"{self.health_measurement}{tags} {','.join(fields)} {message.ts}"

    def event(self, message: wire.Event, site: str | None = None) -> list[str]:
        """``events`` gets the event's numbers (bools as 1/0; ``seq`` when it has none),
        ``events_text`` its other values and its error, under the same tags."""
        tags = tag_set(
            {
                "gateway": message.gateway,
                "site": site,
                "device": message.device,
                "kind": message.kind,
            }
        )
        numbers, texts = [], []
        for key, value in sorted(message.data.items()):
            if isinstance(value, bool | int | float):
                number = float(value)
                if math.isfinite(number):
                    numbers.append(f"{escape_tag(key)}={number!r}")
            elif value is not None:
                text = value if isinstance(value, str) else _json(value)
                texts.append(f"{escape_tag(key)}={quote_string(text)}")
        if message.error is not None:
            texts.append(f"error={quote_string(message.error)}")
        if not numbers:
            numbers.append("seq=" + repr(float(message.seq)))
        lines = [f"{self.events}{tags} {','.join(numbers)} {message.ts}"]
        if texts:
            lines.append(f"{self.events_text}{tags} {','.join(texts)} {message.ts}")
        return lines


_TYPE_OF = {float: "number", int: "number", bool: "bool", str: "string", type(None): "nothing"}


def _fits(declared: str | None, cls: type) -> bool:
    """Whether a value of class ``cls`` fits a metric declared ``declared`` (undeclared:
    anything; a bool fits a number, stored as 1 or 0)."""
    if declared is None or declared == "number":
        return cls is not str
    if declared == "bool":
        return cls is bool
    return cls is str


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
