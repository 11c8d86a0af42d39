"""InfluxDB line protocol, formatted directly (influxdb-client's ``Point`` is much slower:
see ``bench/lineprotocol.py``).

Schema: one point per reading::

    readings,device=<d>,gateway=<g>,site=<s> <metric>=<float> <ts ms>

Numbers are always written as floats, so a metric that is an integer in one
reading and a float in the next never causes a field type conflict (integers
beyond 2**53 lose precision). Booleans and strings are written as such.
Bad-quality readings go to ``reading_errors`` (tag ``metric``, string field
``error``); events to ``events`` (tag ``kind``, their scalar data as fields);
health messages to ``gateway_health`` (tags ``gateway``, ``site``; the vitals as
float fields, plus ``devices`` and ``devices_failing``).

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
    costs only the escaping."""

    _CACHE_MAX = 50_000

    def __init__(self, measurement: str = "readings") -> None:
        self.measurement = escape_measurement(measurement)
        errors = "reading_errors" if measurement == "readings" else f"{measurement}_errors"
        self.errors = escape_measurement(errors)
        self.events = escape_measurement("events")
        self.health_measurement = HEALTH_MEASUREMENT
        self._names: dict[str, str] = {}

    def _escaped(self, name: str) -> str:
        out = self._names.get(name)
        if out is None:
            if len(self._names) >= self._CACHE_MAX:
                self._names.clear()
            out = self._names[name] = escape_tag(name)
        return out

    def telemetry(self, message: wire.Telemetry) -> list[str]:
        # the hot path of ingest (one call per reading batch): per device, a dict of
        # metric → "readings,device=..,gateway=..,site=.. metric=" built once per batch
        lines: list[str] = []
        append = lines.append
        esc = self._escaped
        gateway = esc(message.gateway)
        site = escape_tag(message.site) if message.site else ""
        suffix = f",gateway={gateway},site={site} " if site else f",gateway={gateway} "
        prefix = f"{self.measurement},device="
        heads: dict[str, tuple[str, dict[str, str]]] = {}
        device_name = None
        starts: dict[str, str] = {}
        head = ""
        for r in message.readings:
            if r.device != device_name:
                device_name = r.device
                cached = heads.get(device_name)
                if cached is None:
                    cached = heads[device_name] = (prefix + esc(device_name) + suffix, {})
                head, starts = cached
            value = r.value
            if r.quality == "good":
                start = starts.get(r.metric)
                if start is None:
                    start = starts[r.metric] = f"{head}{esc(r.metric)}="
                cls = value.__class__
                if cls is float:
                    if value - value == 0.0:  # type: ignore[operator]  # finite
                        append(f"{start}{value!r} {r.ts}")
                        continue
                elif cls is int and -_EXACT < value < _EXACT:  # type: ignore[operator]
                    append(f"{start}{value}.0 {r.ts}")  # == repr(float(value)), faster
                    continue
                if cls is not float:
                    formatted = field_value(value)
                    if formatted is not None:
                        append(f"{start}{formatted} {r.ts}")
                        continue
            error = r.error or ("no value" if r.quality == "good" else "bad quality")
            site_tag = f",site={site}" if site else ""
            append(
                f"{self.errors},device={esc(r.device)},gateway={gateway},"
                f"metric={esc(r.metric)}{site_tag} error={quote_string(error)} {r.ts}"
            )
        return lines

    def health(self, message: wire.Health) -> str:
        """``gateway_health,gateway=<g>,site=<s> uptime_s=..,buffer_depth=..,... <ts>``:
        the vitals the gateway sent (absent ones left out), and how many of its devices
        it reports failing (``devices_failing``) out of ``devices``."""
        tags = tag_set({"gateway": message.gateway, "site": message.site})
        fields = [
            f"{name}={float(value)!r}"
            for name in HEALTH_FIELDS
            if (value := getattr(message, name)) is not None and math.isfinite(value)
        ]
        failing = sum(1 for d in message.devices.values() if d.status == "failing")
        fields.append(f"devices={float(len(message.devices))!r}")
        fields.append(f"devices_failing={float(failing)!r}")
        return f"{self.health_measurement}{tags} {','.join(fields)} {message.ts}"

    def event(self, message: wire.Event) -> list[str]:
        tags = tag_set(
            {
                "gateway": message.gateway,
                "site": message.site,
                "device": message.device,
                "kind": message.kind,
            }
        )
        fields = []
        for key, value in sorted(message.data.items()):
            formatted = field_value(value)
            if formatted is not None:
                fields.append(f"{escape_tag(key)}={formatted}")
        if message.error is not None:
            fields.append(f"error={quote_string(message.error)}")
        if not fields:
            fields.append("seq=" + repr(float(message.seq)))
        return [f"{self.events}{tags} {','.join(fields)} {message.ts}"]
