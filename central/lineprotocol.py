"""InfluxDB line protocol, formatted directly (influxdb-client's ``Point`` is ~18x slower).

Schema: one point per reading::

    readings,device=<d>,gateway=<g>,site=<s> <metric>=<float> <ts ms>

Numbers are always written as floats, so a metric that is an integer in one
reading and a float in the next never causes a field type conflict. Bad-quality
readings go to ``reading_errors`` (tag ``metric``, string field ``error``);
events to ``events`` (tag ``kind``, their scalar data as fields).
"""

import json
import math
from typing import Any

import wire

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
_MEAS_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " "})


def escape_tag(text: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces escaped."""
    out = text.translate(_TAG_ESCAPES)
    if out.endswith("\\"):
        out += " "  # a trailing backslash would escape the separator
    return out


def escape_measurement(text: str) -> str:
    return text.translate(_MEAS_ESCAPES)


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
    def __init__(self, measurement: str = "readings") -> None:
        self.measurement = escape_measurement(measurement)
        errors = "reading_errors" if measurement == "readings" else f"{measurement}_errors"
        self.errors = escape_measurement(errors)
        self.events = escape_measurement("events")

    def telemetry(self, message: wire.Telemetry) -> list[str]:
        lines = []
        gateway, site = escape_tag(message.gateway), escape_tag(message.site or "")
        base_tags = f"gateway={gateway}"
        site_tag = f",site={site}" if site else ""
        for r in message.readings:
            device = escape_tag(r.device)
            if r.quality == "good":
                value = field_value(r.value)
                if value is not None:
                    lines.append(
                        f"{self.measurement},device={device},{base_tags}{site_tag} "
                        f"{escape_tag(r.metric)}={value} {r.ts}"
                    )
                    continue
            error = r.error or ("no value" if r.quality == "good" else "bad quality")
            metric = escape_tag(r.metric)
            lines.append(
                f"{self.errors},device={device},{base_tags},metric={metric}{site_tag} "
                f"error={quote_string(error)} {r.ts}"
            )
        return lines

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
