"""The tapping-box profile: how one family of POS receipts is read.

A profile is data (``firmware-profiles/tapping-box/*.yaml``); this model
validates it, so a bad regular expression or code page is reported with the
file and the key (``labels.total.match[2]: invalid regular expression ...``).
"""

import codecs
import re
from typing import Annotated, Any, Literal

import msgspec

from agent.drivers.base import ProfileBase
from agent.escpos.assembler import KATAKANA
from agent.escpos.numbers import Thousands
from wire.durations import Duration
from wire.structs import Regex, Section

# Epson's ESC t table, for the code pages Python can decode. A printer model
# with another table overrides entries with ``code_pages:`` in its profile.
EPSON_CODE_PAGES: dict[int, str] = {
    0: "cp437",
    1: KATAKANA,
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


class DateRegex(str):
    """A date pattern with the named groups ``d``, ``m`` and ``y``."""

    @classmethod
    def parse(cls, value: Any) -> "DateRegex":
        groups = re.compile(Regex.parse(value)).groupindex
        missing = [g for g in ("d", "m", "y") if g not in groups]
        if missing:
            raise ValueError(
                f"date pattern {value!r} needs the named groups (?P<d>..), (?P<m>..), (?P<y>..);"
                f" missing {', '.join(missing)}"
            )
        return cls(value)


class TimeRegex(str):
    """A time pattern with the named groups ``H`` and ``M``."""

    @classmethod
    def parse(cls, value: Any) -> "TimeRegex":
        groups = re.compile(Regex.parse(value)).groupindex
        if "H" not in groups or "M" not in groups:
            raise ValueError(
                f"time pattern {value!r} needs the named groups (?P<H>..) and (?P<M>..)"
            )
        return cls(value)


def _codec(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError("expected a code page name, e.g. cp858")
    if name == KATAKANA:
        return name
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown code page {name!r} (e.g. cp437, cp850, cp858, cp1252)") from None
    return name


class CodePage(str):
    """A code page Python can decode (``cp858``, ``cp1252``...)."""

    @classmethod
    def parse(cls, value: Any) -> "CodePage":
        return cls(_codec(value))


class CodePageTable(dict[int, str]):
    """``ESC t`` number (0-255) → code page; an error names the number."""

    @classmethod
    def parse(cls, value: Any) -> "CodePageTable":
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of ESC t numbers to code pages, e.g. {16: cp1252}")
        table = cls()
        for key, name in value.items():
            number = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.strip().isdigit():
                number = int(key)
            if number is None or not 0 <= number <= 255:
                raise ValueError(f"ESC t numbers are 0-255, got {key!r}")
            try:
                table[number] = _codec(name)
            except ValueError as exc:
                raise ValueError(f"ESC t {number}: {exc}") from None
        return table


class FieldRule(Section):
    """Where one field is printed: label patterns tried in order on each line.

    Patterns are searched anywhere on a line. The first ``match`` pattern that
    finds a line wins; a match is skipped when an ``exclude`` pattern finds the
    label's cell and its value (``Sub Total 144.000`` for ``total``). ``pick``
    says whether the first or the last such line counts, or (money fields) the
    ``sum`` of all of them (tax printed per rate). The value is the
    ``(?P<value>...)`` group when the pattern has one, else what follows the
    label in its cell and the next cells (an amount, a count or a word, by
    field); a label with no value after it takes the value alone on the next
    line or the cell printed under it.
    """

    match: list[Regex] = msgspec.field(default_factory=list)
    exclude: list[Regex] = msgspec.field(default_factory=list)
    pick: Literal["first", "last", "sum"] = "first"


class Labels(Section):
    receipt_no: FieldRule = msgspec.field(default_factory=FieldRule)
    subtotal: FieldRule = msgspec.field(default_factory=FieldRule)
    service: FieldRule = msgspec.field(default_factory=FieldRule)
    tax: FieldRule = msgspec.field(default_factory=FieldRule)
    total: FieldRule = msgspec.field(default_factory=FieldRule)
    items: FieldRule = msgspec.field(default_factory=FieldRule)


class DateRules(Section):
    """The receipt's date and time: ``dates`` patterns (groups d, m, y and
    optionally H, M, S) tried in order; when the matching line has no time, the
    ``times`` patterns are tried on that line and the next."""

    dates: list[DateRegex] = msgspec.field(default_factory=list)
    times: list[TimeRegex] = msgspec.field(default_factory=list)
    pick: Literal["first", "last"] = "first"


Locale = Literal[
    "id", "id-ID", "en", "en-US", "en-GB", "en-AU", "en-SG", "en-MY", "en-IN", "ms", "ms-MY"
]
"""The names in :data:`agent.escpos.numbers.LOCALES`."""

RequiredField = Literal["receipt_no", "datetime", "subtotal", "service", "tax", "total"]


def _total_only() -> list[RequiredField]:
    return ["total"]


class EscposProfile(ProfileBase):
    driver: Literal["escpos"]
    code_page: CodePage = CodePage("cp858")
    code_pages: CodePageTable = msgspec.field(default_factory=CodePageTable)
    """``ESC t`` numbers that differ from Epson's table (which covers the rest)."""
    idle_gap: Duration = Duration(2.0)
    """Silence that ends a receipt when the printer is not told to cut; 0 turns it off."""
    max_receipt_bytes: Annotated[int, msgspec.Meta(ge=1024, le=98304)] = 65536
    """Raw bytes kept (and sent base64) per receipt; the rest is counted, not kept.
    At most 96 KiB, so an event with its text stays under the 256 KiB wire limit."""
    max_lines: Annotated[int, msgspec.Meta(ge=10, le=10000)] = 1000
    """Text lines in one receipt; past this the receipt is closed (ended_by "size")."""
    send_text: bool = True
    locale: Locale = "id"
    """Decimal mark for amounts like ``1.500`` and day/month order for dates
    like ``02/09/2026`` when the receipt itself doesn't tell: ``id`` (1.500 is
    fifteen hundred, day first), ``en`` (one and a half, month first), ``en-GB``,
    ``en-SG``, ``en-MY``, ``en-AU``, ``en-IN``, ``ms`` (decimal point, day first)."""
    thousands: Thousands = "auto"
    ignore_case: bool = True
    labels: Labels = msgspec.field(default_factory=Labels)
    datetime: DateRules = msgspec.field(default_factory=DateRules)
    required: list[RequiredField] = msgspec.field(default_factory=_total_only)
    """Fields whose absence makes the receipt an error (it is still sent)."""

    def code_page_table(self) -> dict[int, str]:
        return {**EPSON_CODE_PAGES, **self.code_pages}
