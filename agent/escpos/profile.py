"""The tapping-box profile: how one family of POS receipts is read.

A profile is data (``firmware-profiles/tapping-box/*.yaml``); this model
validates it, so a bad regular expression or code page is reported with the
file and the key (``labels.total.match[2]: invalid regular expression ...``).
"""

import codecs
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from agent.drivers.base import ProfileBase
from agent.escpos.numbers import Thousands
from wire import Duration

# Epson's ESC t table, for the code pages Python can decode. A printer model
# with another table overrides entries with ``code_pages:`` in its profile.
EPSON_CODE_PAGES: dict[int, str] = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    13: "cp857",
    14: "cp737",
    15: "iso8859_7",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
    34: "cp855",
    35: "cp861",
    36: "cp862",
    37: "cp864",
    38: "cp869",
    39: "iso8859_2",
    40: "iso8859_15",
    45: "cp1250",
    46: "cp1251",
    47: "cp1253",
    48: "cp1254",
    49: "cp1255",
    50: "cp1256",
    51: "cp1257",
    52: "cp1258",
}


def _codec(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown code page {name!r} (e.g. cp437, cp850, cp858, cp1252)") from None
    return name


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return pattern


def _date_regex(pattern: str) -> str:
    groups = re.compile(_regex(pattern)).groupindex
    missing = [g for g in ("d", "m", "y") if g not in groups]
    if missing:
        raise ValueError(
            f"date pattern {pattern!r} needs the named groups (?P<d>..), (?P<m>..), (?P<y>..);"
            f" missing {', '.join(missing)}"
        )
    return pattern


def _time_regex(pattern: str) -> str:
    groups = re.compile(_regex(pattern)).groupindex
    if "H" not in groups or "M" not in groups:
        raise ValueError(f"time pattern {pattern!r} needs the named groups (?P<H>..) and (?P<M>..)")
    return pattern


Regex = Annotated[str, AfterValidator(_regex)]
DateRegex = Annotated[str, AfterValidator(_date_regex)]
TimeRegex = Annotated[str, AfterValidator(_time_regex)]
CodePage = Annotated[str, AfterValidator(_codec)]


class FieldRule(BaseModel):
    """Where one field is printed: label patterns tried in order on each line.

    The first ``match`` pattern that finds a line (not matching any ``exclude``)
    wins; ``pick`` says whether the first or the last such line counts. The
    value is the ``(?P<value>...)`` group when the pattern has one, else the
    text after the match (an amount, a count or a word, by field). A money label
    with no amount after it takes an amount alone on the next line.
    """

    model_config = ConfigDict(extra="forbid")

    match: list[Regex] = Field(default_factory=list)
    exclude: list[Regex] = Field(default_factory=list)
    pick: Literal["first", "last"] = "first"


class Labels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    receipt_no: FieldRule = Field(default_factory=FieldRule)
    subtotal: FieldRule = Field(default_factory=FieldRule)
    service: FieldRule = Field(default_factory=FieldRule)
    tax: FieldRule = Field(default_factory=FieldRule)
    total: FieldRule = Field(default_factory=FieldRule)
    items: FieldRule = Field(default_factory=FieldRule)


class DateRules(BaseModel):
    """The receipt's date and time: ``dates`` patterns (groups d, m, y and
    optionally H, M, S) tried in order; when the matching line has no time, the
    ``times`` patterns are tried on that line and the next."""

    model_config = ConfigDict(extra="forbid")

    dates: list[DateRegex] = Field(default_factory=list)
    times: list[TimeRegex] = Field(default_factory=list)
    pick: Literal["first", "last"] = "first"


RequiredField = Literal["receipt_no", "datetime", "subtotal", "service", "tax", "total"]


def _total_only() -> list[RequiredField]:
    return ["total"]


class EscposProfile(ProfileBase):
    driver: Literal["escpos"]
    code_page: CodePage = "cp858"
    code_pages: dict[int, CodePage] = Field(default_factory=dict)
    """``ESC t n`` numbers that differ from Epson's table (which covers the rest)."""
    idle_gap: Duration = 2.0
    """Silence that ends a receipt when the printer is not told to cut; 0 turns it off."""
    max_receipt_bytes: int = Field(default=65536, ge=1024, le=98304)
    """Raw bytes kept (and sent base64) per receipt; the rest is counted, not kept.
    At most 96 KiB, so an event with its text stays under the 256 KiB wire limit."""
    max_lines: int = Field(default=1000, ge=10, le=10000)
    """Text lines in one receipt; past this the receipt is closed (ended_by "size")."""
    send_text: bool = True
    thousands: Thousands = "auto"
    ignore_case: bool = True
    labels: Labels = Field(default_factory=Labels)
    datetime: DateRules = Field(default_factory=DateRules)
    required: list[RequiredField] = Field(default_factory=_total_only)
    """Fields whose absence makes the receipt an error (it is still sent)."""

    @field_validator("code_pages")
    @classmethod
    def _code_page_numbers(cls, value: dict[int, str]) -> dict[int, str]:
        bad = [n for n in value if not 0 <= n <= 255]
        if bad:
            raise ValueError(f"ESC t numbers are 0-255, got {bad}")
        return value

    def code_page_table(self) -> dict[int, str]:
        return {**EPSON_CODE_PAGES, **self.code_pages}
