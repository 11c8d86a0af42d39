"""What a technician says about one gateway: id, site, name, location, timezone.

Validated the same way for ``gateway add`` and for each row of ``batch``; each check
returns the problem as text so ``batch`` can name the line and column.
"""

import math
import re
from dataclasses import dataclass

from wire import gateway_id_ok, reserved_gateway_id

TIMEZONES = {
    "Asia/Jakarta": "Asia/Jakarta",
    "Asia/Makassar": "Asia/Makassar",
    "Asia/Jayapura": "Asia/Jayapura",
    "WIB": "Asia/Jakarta",
    "WITA": "Asia/Makassar",
    "WIT": "Asia/Jayapura",
}
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


@dataclass(frozen=True)
class GatewaySpec:
    id: str
    site: str
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    timezone: str | None = None

    def central_payload(self) -> dict[str, object]:
        """The body of ``POST /api/v1/gateways``."""
        location = None if self.lat is None else {"lat": self.lat, "lon": self.lon}
        return {
            "id": self.id,
            "site": self.site,
            "name": self.name,
            "location": location,
            "timezone": self.timezone,
        }


def check_id(value: str) -> str:
    if reserved_gateway_id(value):
        raise ValueError(
            f"{value!r} is reserved (central's broker identities are 'pantau-central...', "
            "and 'central' and names starting with '$' are refused too): pick another id"
        )
    if not gateway_id_ok(value):
        raise ValueError(
            f"{value!r} is not a gateway id: use lowercase letters, digits and dashes, "
            "1-64 characters, no dash at either end (e.g. gw-ambon-01)"
        )
    return value


def check_text(value: str, what: str) -> str:
    value = value.strip()
    if not _TEXT.match(value):
        raise ValueError(f"{what} must be 1-128 printable characters")
    return value


def check_coordinate(value: str | float | None, what: str, limit: float) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ValueError(f"{value!r} is not a {what} (-{limit:g} to {limit:g})")
    return number


def check_timezone(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    found = TIMEZONES.get(value.strip()) or TIMEZONES.get(value.strip().upper())
    if found is None:
        raise ValueError(
            f"{value!r} is not an Indonesian timezone: use Asia/Jakarta (WIB), "
            "Asia/Makassar (WITA) or Asia/Jayapura (WIT)"
        )
    return found


def build_spec(
    id: str,
    site: str,
    *,
    name: str | None = None,
    lat: str | float | None = None,
    lon: str | float | None = None,
    timezone: str | None = None,
) -> tuple[GatewaySpec | None, dict[str, str]]:
    """The spec, or None and the problems keyed by field name."""
    problems: dict[str, str] = {}
    values: dict[str, object] = {}
    checks = {
        "id": lambda: check_id(id.strip()),
        "site": lambda: check_text(site, "site"),
        "name": lambda: check_text(name, "name") if name and name.strip() else None,
        "lat": lambda: check_coordinate(lat, "latitude", 90),
        "lon": lambda: check_coordinate(lon, "longitude", 180),
        "timezone": lambda: check_timezone(timezone),
    }
    for field, check in checks.items():
        try:
            values[field] = check()
        except ValueError as exc:
            problems[field] = str(exc)
    if (
        "lat" not in problems
        and "lon" not in problems
        and (values["lat"] is None) != (values["lon"] is None)
    ):
        problems["lon" if values["lon"] is None else "lat"] = "give both lat and lon, or neither"
    if problems:
        return None, problems
    return GatewaySpec(**values), {}  # type: ignore[arg-type]
