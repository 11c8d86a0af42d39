"""Receipt text → fields, by the profile's label patterns.

Fields: ``receipt_no`` (text), ``datetime`` (ISO 8601 local time as printed,
``2026-11-23T14:05:00``, or a date alone), ``subtotal``, ``service``, ``tax``,
``total`` (exact ``Decimal`` amounts as printed, see :mod:`agent.escpos.numbers`)
and ``items`` (the printed item count). A field not found is None.

Where a label is: anywhere on a line. A printed line is split into cells at
runs of two or more spaces (the column model of the assembler puts text where
the printer put it, so columns are separated by gaps). A label's value is in
its own cell after the label or in the cells after it, up to the next cell
that starts another label-like text; or, when the label's line has no value,
on the next line: an amount alone on that line, or the cell printed under the
label (a header row over a value row).

Parsing never raises: a receipt that can't be read gets ``error`` (no text at
all, a required field missing, or an internal failure) and is still reported.
"""

import base64
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from agent.escpos.assembler import RawReceipt, ReceiptAssembler
from agent.escpos.numbers import (
    CURRENCY,
    LOCALES,
    DecimalMark,
    Thousands,
    amount_spans,
    guess_decimal_mark,
    parse_amount,
    parse_count,
    shows_currency,
)
from agent.escpos.profile import EscposProfile, FieldRule

MONEY_FIELDS = ("subtotal", "service", "tax", "total")

MAX_TEXT_CHARS = 32768
"""Text sent with a receipt event; past this it is cut (``text_truncated``)."""

MONTHS = {
    "jan": 1, "januari": 1, "january": 1,
    "feb": 2, "peb": 2, "februari": 2, "pebruari": 2, "february": 2,
    "mar": 3, "maret": 3, "march": 3,
    "apr": 4, "april": 4,
    "mei": 5, "may": 5,
    "jun": 6, "juni": 6, "june": 6,
    "jul": 7, "juli": 7, "july": 7,
    "agu": 8, "agt": 8, "agus": 8, "agustus": 8, "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "okt": 10, "oct": 10, "oktober": 10, "october": 10,
    "nov": 11, "nop": 11, "november": 11, "nopember": 11,
    "des": 12, "dec": 12, "desember": 12, "december": 12,
}  # fmt: skip

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9/\-.#_]*")
_MERIDIEM = re.compile(r"\s*([AaPp])\.?\s?[Mm]\.?(?![A-Za-z])")
_WORDLIKE = re.compile(r"\w{3}", re.UNICODE)
"""Three letters or digits in a row: the receipt printed some text."""
_TRAILING_WORDS = re.compile(r" ?[A-Za-z][A-Za-z.()]*(?: [A-Za-z][A-Za-z.()]*)*(?=$|\s{2,})")
_GAP_AT = re.compile(r"\s{2,}")
_BORDERS = re.compile(r"[\t|\u2500-\u257f]")
"""Tabs, table borders and rules: printed as space between cells."""
_CELL = re.compile(r"\S+(?: \S+)*")
_LABEL_WORD = re.compile(rf"(?i)(?<![A-Za-z])(?!{CURRENCY}(?![A-Za-z]))[A-Za-z]{{2,}}")
"""A word that is not a currency code: the start of another label in a row."""

IMAGE_ONLY = "image_only: the receipt was printed as an image, no text to read"
NO_TEXT = "no text on the receipt (printed as an image?)"


@dataclass
class ParsedReceipt:
    receipt_no: str | None = None
    datetime: str | None = None
    subtotal: Decimal | None = None
    service: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal | None = None
    items: int | None = None
    error: str | None = None
    image_only: bool = False

    def fields(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("image_only")
        return data


@dataclass
class _Rule:
    match: list[re.Pattern[str]]
    exclude: list[re.Pattern[str]]
    pick: str


@dataclass(frozen=True)
class _Cell:
    start: int
    end: int
    text: str


def _cells(line: str, offset: int = 0) -> list[_Cell]:
    """The cells of a printed line: text separated by two spaces or more."""
    return [_Cell(m.start() + offset, m.end() + offset, m[0]) for m in _CELL.finditer(line)]


ValueOf = Callable[[str], Any]


@dataclass(frozen=True)
class _Field:
    rule: _Rule
    value_of: ValueOf
    alone: ValueOf | None
    money: bool


class ReceiptParser:
    """Compiled once from a profile; ``parse(lines)`` for each receipt."""

    def __init__(self, profile: EscposProfile) -> None:
        flags = re.IGNORECASE if profile.ignore_case else 0
        self.thousands: Thousands = profile.thousands
        rules = LOCALES[profile.locale]
        self.locale_mark: DecimalMark = rules.decimal_mark
        self.day_first = rules.day_first
        self.required = list(profile.required)
        labels = profile.labels
        self.rules = {
            name: self._compile(getattr(labels, name), flags)
            for name in ("receipt_no", *MONEY_FIELDS, "items")
        }
        self.dates = [re.compile(p, flags) for p in profile.datetime.dates]
        self.times = [re.compile(p, flags) for p in profile.datetime.times]
        self.date_pick = profile.datetime.pick
        self._hint: str = self.locale_mark
        self._by_currency = True

    @staticmethod
    def _compile(rule: FieldRule, flags: int) -> _Rule:
        return _Rule(
            [re.compile(p, flags) for p in rule.match],
            [re.compile(p, flags) for p in rule.exclude],
            rule.pick,
        )

    def parse(self, lines: list[str], graphics: int = 0) -> ParsedReceipt:
        try:
            return self._parse(lines, graphics)
        except Exception as exc:  # a parser bug must not lose the receipt
            return ParsedReceipt(error=f"parser failed: {type(exc).__name__}: {exc}")

    def _parse(self, lines: list[str], graphics: int) -> ParsedReceipt:
        lines = [_BORDERS.sub(" ", line).strip() for line in lines]
        if graphics and not any(_WORDLIKE.search(line) for line in lines):
            # images, and at most stray characters (an unknown command's parameters)
            return ParsedReceipt(error=IMAGE_ONLY, image_only=True)
        if not any(lines):
            return ParsedReceipt(error=NO_TEXT)
        evidence = guess_decimal_mark(lines)
        self._by_currency = evidence is None
        if evidence:
            self._hint = evidence
        elif shows_currency(lines):
            self._hint = ""  # amounts in a currency: 1.500 and 1,500 are thousands
        else:
            self._hint = self.locale_mark
        out = ParsedReceipt()
        out.receipt_no = self._find(lines, self.rules["receipt_no"], _word, _receipt_no_alone)
        for name in MONEY_FIELDS:
            value = self._find(lines, self.rules[name], self._money, self._amount_alone, money=True)
            if value is not None and name in ("tax", "service"):
                value = abs(value)  # "(1.364)": included tax is printed in parentheses
            setattr(out, name, value)
        out.items = self._find(lines, self.rules["items"], _count, None)
        out.datetime = self._datetime(lines)
        missing = [name for name in self.required if getattr(out, name) is None]
        if missing:
            out.error = f"no {' and no '.join(missing)} found"
        return out

    def _money(self, text: str) -> Decimal | None:
        return parse_amount(text, self.thousands, self._hint, self._by_currency)

    def _amount_alone(self, line: str) -> Decimal | None:
        """The amount on a line that holds nothing else (a right-aligned figure
        printed under its label)."""
        stripped = re.sub(rf"(?i){CURRENCY}|[\s:=]", "", line)
        if not stripped or not re.fullmatch(r"[-(]?[\d.,]+-?\)?,?-?", stripped):
            return None
        return self._money(line)

    def _find(
        self,
        lines: list[str],
        rule: _Rule,
        value_of: ValueOf,
        alone: ValueOf | None,
        money: bool = False,
    ) -> Any:
        field = _Field(rule, value_of, alone, money)
        for pattern in rule.match:
            found = []
            for index in range(len(lines)):
                value = self._on_line(lines, index, pattern, field)
                if value is not None:
                    found.append(value)
                    if rule.pick == "first":
                        break
            if found:
                if rule.pick == "sum" and money:
                    return sum(found[1:], found[0])
                return found[-1] if rule.pick == "last" else found[0]
        return None

    def _on_line(
        self, lines: list[str], index: int, pattern: re.Pattern[str], field: "_Field"
    ) -> Any:
        rule, value_of, alone, money = field.rule, field.value_of, field.alone, field.money
        line = lines[index]
        cells = _cells(line)
        for m in pattern.finditer(line):
            start = m.start() + len(m[0]) - len(m[0].lstrip())
            home = next((c for c in cells if c.start <= start < c.end), None)
            if home is None:
                continue
            if "value" in pattern.groupindex:
                value, end = (value_of(m["value"] or ""), m.end())
            elif money:
                value, end = self._money_after(line, m.end())
            else:
                value, end = _text_after(line, m.end(), value_of)
            if value is None:
                end = home.end
                if index + 1 < len(lines):
                    value = self._value_under(lines[index + 1], home, cells, value_of, alone)
            # the label's phrase: from the start of its cell, or from the end of
            # the value before it in the same cell ("Subtotal $12.95 Tax $1.30")
            before = amount_spans(line[home.start : start], self.thousands, self._hint)
            phrase = home.start + (before[-1][1] if before else 0)
            end = max(end, m.end())
            tail = _TRAILING_WORDS.match(line, end)  # "Total: 3 items": words after the value
            segment = line[phrase : tail.end() if tail else end]
            if any(x.search(segment) for x in rule.exclude):
                continue
            if value is not None:
                return value
        return None

    def _money_after(self, line: str, start: int) -> tuple[Decimal | None, int]:
        """The amount after a money label: the last amount before the next
        label-like word that follows an amount (``Subtotal 12.95  Tax 1.30``,
        ``Subtotal: $12.95 Tax: $1.30``). A label-like word in a later cell
        before any amount means the value is not on this line."""
        rest = line[start:]
        spans = amount_spans(rest, self.thousands, self._hint, self._by_currency)
        words = [m.start() for m in _LABEL_WORD.finditer(rest)]
        if not spans:
            return None, start
        first_end = spans[0][1]
        gap = _GAP_AT.search(rest)
        if gap and gap.end() <= spans[0][0] and any(gap.end() <= w < spans[0][0] for w in words):
            return None, start  # "TAX:  Rate 8%  10.00": another label's cell comes first
        stop = next((w for w in words if w >= first_end), len(rest))
        taken = [span for span in spans if span[0] < stop]
        return taken[-1][2], start + taken[-1][1]

    @staticmethod
    def _value_under(
        below: str,
        home: _Cell,
        cells: list[_Cell],
        value_of: ValueOf,
        alone: ValueOf | None,
    ) -> Any:
        if alone is not None and home is cells[0]:
            value = alone(below)
            if value is not None:
                return value
        if len(cells) < 2:
            return None
        # a header row: the value is the cell printed under the label's column
        index = cells.index(home)
        right = cells[index + 1].start if index + 1 < len(cells) else home.end + 40
        left = cells[index - 1].end if index else 0
        for cell in _cells(below):
            if cell.start < right and cell.end > left and cell.end > home.start:
                return value_of(cell.text)
        return None

    def _datetime(self, lines: list[str]) -> str | None:
        for pattern in self.dates:
            found = []
            for index, line in enumerate(lines):
                for m in pattern.finditer(line):
                    stamp = self._stamp(m, lines, index)
                    if stamp is not None:
                        found.append(stamp)
                        break
                if found and self.date_pick == "first":
                    break
            if found:
                return found[-1]
        return None

    def _stamp(self, m: re.Match[str], lines: list[str], index: int) -> str | None:
        groups = m.groupdict()
        try:
            day = self._date(groups, m)
        except (ValueError, KeyError, TypeError):
            return None
        clock = _clock(groups, lines[index][m.end() :])
        if clock is None:
            rest = lines[index][m.end() :]
            for text in (rest, lines[index + 1] if index + 1 < len(lines) else ""):
                clock = self._time_in(text)
                if clock is not None:
                    break
        if clock is None:
            return day.isoformat()
        hour, minute, second = clock
        return datetime(day.year, day.month, day.day, hour, minute, second).isoformat()

    def _date(self, groups: dict[str, str | None], m: re.Match[str]) -> date:
        """Day and month as printed; two numbers in an order the pattern can't
        tell (``02/09/2026``) are read day-first or month-first by the locale,
        and a date only one reading allows (``28/02``, ``02/28``) is read that way."""
        year = _year(groups["y"] or "")
        first, second = groups["d"] or "", groups["m"] or ""
        if not (first.isdigit() and second.isdigit()):
            return date(year, _month(second), int(first))
        day_printed_first = m.start("d") < m.start("m")
        year_first = m.start("y") < min(m.start("d"), m.start("m"))
        readings = [(int(first), int(second)), (int(second), int(first))]
        if day_printed_first and not year_first and not self.day_first:
            readings.reverse()
        for d, mo in readings:
            try:
                return date(year, mo, d)
            except ValueError:
                continue
        raise ValueError("no such date")

    def _time_in(self, text: str) -> tuple[int, int, int] | None:
        for pattern in self.times:
            for m in pattern.finditer(text):
                clock = _clock(m.groupdict(), text[m.end() :])
                if clock is not None:
                    return clock
        return None


def _text_after(line: str, start: int, value_of: ValueOf) -> tuple[Any, int]:
    """A word or count in the cell the label ends in, else in the next cell."""
    rest = line[start:]
    for cell in _cells(rest, start)[:2]:
        value = value_of(cell.text)
        if value is not None:
            return value, cell.end
        if cell.start - start > 1 or _LABEL_WORD.match(cell.text.lstrip(" :#.=-")):
            break
    return None, start


def _clock(groups: dict[str, str | None], after: str = "") -> tuple[int, int, int] | None:
    """Hour, minute, second; ``after`` is the text that follows the time, where
    ``AM``/``PM`` (``a.m.``, ``pm``) turns a 12-hour clock into 24 hours."""
    if not groups.get("H") or not groups.get("M"):
        return None
    hour, minute = int(groups["H"] or 0), int(groups["M"] or 0)
    second = int(groups.get("S") or 0)
    meridiem = _MERIDIEM.match(after)
    if meridiem and 1 <= hour <= 12:
        hour = hour % 12 + (12 if meridiem[1].lower() == "p" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return hour, minute, second


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if year < 100 else year


def _month(text: str) -> int:
    if text.isdigit():
        return int(text)
    return MONTHS[text.lower().rstrip(".")]


def _word(text: str) -> str | None:
    """A receipt number: a word with at least one digit in it."""
    m = _WORD.search(text.lstrip(" :#.=-"))
    if m is None:
        return None
    word = m[0].rstrip(".-")
    return word if any(c.isdigit() for c in word) else None


def _receipt_no_alone(line: str) -> str | None:
    """A receipt number printed alone on the line under its label."""
    cells = _cells(line)
    if len(cells) != 1 or " " in cells[0].text:
        return None
    return _word(cells[0].text)


def _count(text: str) -> int | None:
    return parse_count(text)


def salvage_record(raw: bytes, size: int) -> dict[str, Any]:
    """The ``data`` of a receipt event for bytes the reader failed on: no fields,
    the raw bytes kept (``size`` counts every byte, kept or not)."""
    data: dict[str, Any] = dict.fromkeys(ParsedReceipt().fields())
    data.pop("error")
    data.update(
        ended_by="error",
        bytes=size,
        raw_b64=base64.b64encode(raw).decode("ascii"),
        raw_truncated=size > len(raw),
    )
    return data


def wire_number(value: Decimal) -> int | float:
    """An amount as a JSON number: whole amounts printed without a decimal part
    stay integers; others are floats, which give back the printed digits for
    any amount of up to 15 significant digits (``14.25``, ``1250000.5``)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(value)
    return float(value)


def receipt_record(
    receipt: RawReceipt,
    parsed: ParsedReceipt,
    send_text: bool = True,
    raw: bool = True,
    exact: bool = False,
) -> dict[str, Any]:
    """The ``data`` of a receipt event: parsed fields, how it ended, raw bytes.

    Amounts are ``Decimal`` when ``exact`` (for a JSON encoder that writes
    them as numbers digit for digit), else JSON numbers (:func:`wire_number`)."""
    data = parsed.fields()
    data.pop("error")
    if not exact:
        for name in MONEY_FIELDS:
            if data[name] is not None:
                data[name] = wire_number(data[name])
    if parsed.image_only:
        data["image_only"] = True
    data["ended_by"] = receipt.ended_by
    data["bytes"] = receipt.size
    if raw:
        data["raw_b64"] = base64.b64encode(receipt.raw).decode("ascii")
        data["raw_truncated"] = receipt.truncated
    if send_text:
        text = receipt.text
        data["text"] = text[:MAX_TEXT_CHARS]
        if len(text) > MAX_TEXT_CHARS:
            data["text_truncated"] = True
    return data


Record = tuple[dict[str, Any], str | None]
"""A receipt event's ``data`` and its ``error``."""


class ReceiptReader:
    """Bytes in, receipt records out: an assembler and a parser built from a profile."""

    def __init__(self, profile: EscposProfile, raw: bool = True, exact: bool = False) -> None:
        self.profile = profile
        self.raw = raw
        self.exact = exact
        self.parser = ReceiptParser(profile)
        self.assembler = ReceiptAssembler(
            code_page=profile.code_page,
            code_pages=profile.code_page_table(),
            idle_gap=profile.idle_gap,
            max_bytes=profile.max_receipt_bytes,
            max_lines=profile.max_lines,
        )

    def feed(self, data: bytes, now: float | None = None) -> list[Record]:
        """Bytes that arrived at ``now`` (monotonic seconds; None: ignore idle gaps)."""
        return self._records(self.assembler.feed(data, now))

    def idle(self, now: float) -> list[Record]:
        return self._records(self.assembler.idle(now))

    def end(self) -> list[Record]:
        return self._records(self.assembler.end())

    def _records(self, receipts: list[RawReceipt]) -> list[Record]:
        out = []
        for receipt in receipts:
            parsed = self.parser.parse(receipt.lines, receipt.graphics)
            out.append(
                (
                    receipt_record(receipt, parsed, self.profile.send_text, self.raw, self.exact),
                    parsed.error,
                )
            )
        return out
