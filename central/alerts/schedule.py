"""When a ``stale`` rule applies: days and hours in the site's own timezone.

``hours: "10:00-22:00"``; a window that wraps midnight (``"22:00-06:00"``) belongs
to the day it starts on. Indonesia's zones: WIB = Asia/Jakarta, WITA =
Asia/Makassar, WIT = Asia/Jayapura (none has daylight saving time).
"""

import re
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
INDONESIA = {"WIB": "Asia/Jakarta", "WITA": "Asia/Makassar", "WIT": "Asia/Jayapura"}
DEFAULT_TIMEZONE = "Asia/Jakarta"

_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def zone(name: str | None) -> ZoneInfo | None:
    """``WIB``/``WITA``/``WIT`` or an IANA name → ZoneInfo; None when unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(INDONESIA.get(name.upper(), name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    hours: str = "00:00-24:00"
    timezone: str | None = None  # overrides the site's timezone (WIB, WITA, WIT or IANA)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        m = _HOURS.match(value.strip())
        if not m:
            raise ValueError('expected "HH:MM-HH:MM", e.g. "10:00-22:00"')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
            raise ValueError('hours run from 00:00 to 24:00, e.g. "10:00-22:00"')
        if start == end:
            raise ValueError('an empty window; for the whole day write "00:00-24:00"')
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None and zone(value) is None:
            raise ValueError("unknown timezone: use WIB, WITA, WIT or an IANA name")
        return value

    def _minutes(self) -> tuple[int, int]:
        m = _HOURS.match(self.hours)
        assert m
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        return h1 * 60 + m1, h2 * 60 + m2

    def window_start(self, now: float, tz: ZoneInfo) -> float | None:
        """Unix time the current window opened, or None when ``now`` is outside it."""
        local = datetime.fromtimestamp(now, tz)
        minute = local.hour * 60 + local.minute
        start, end = self._minutes()
        today = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if start < end:
            if DAYS[local.weekday()] in self.days and start <= minute < end:
                return (today + timedelta(minutes=start)).timestamp()
            return None
        if minute >= start and DAYS[local.weekday()] in self.days:
            return (today + timedelta(minutes=start)).timestamp()
        if minute < end and DAYS[(local.weekday() - 1) % 7] in self.days:
            return (today - timedelta(days=1) + timedelta(minutes=start)).timestamp()
        return None
