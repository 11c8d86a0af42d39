"""Receipt text → fields, by the profile's label patterns.

Fields: ``receipt_no`` (text), ``datetime`` (ISO 8601 local time as printed,
``2026-11-23T14:05:00``, or a date alone), ``subtotal``, ``service``, ``tax``,
``total`` (whole rupiah, see :mod:`agent.escpos.numbers`) and ``items`` (the
printed item count). A field not found is None.

Parsing never raises: a receipt that can't be read gets ``error`` (no text at
all, a required field missing, or an internal failure) and is still reported.
"""

import base64
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from agent.escpos.assembler import RawReceipt, ReceiptAssembler
from agent.escpos.numbers import Thousands, parse_amount, parse_count
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


@dataclass
class ParsedReceipt:
    receipt_no: str | None = None
    datetime: str | None = None
    subtotal: int | None = None
    service: int | None = None
    tax: int | None = None
    total: int | None = None
    items: int | None = None
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Rule:
    match: list[re.Pattern[str]]
    exclude: list[re.Pattern[str]]
    pick: str


class ReceiptParser:
    """Compiled once from a profile; ``parse(lines)`` for each receipt."""

    def __init__(self, profile: EscposProfile) -> None:
        flags = re.IGNORECASE if profile.ignore_case else 0
        self.thousands: Thousands = profile.thousands
        self.required = list(profile.required)
        labels = profile.labels
        self.rules = {
            name: self._compile(getattr(labels, name), flags)
            for name in ("receipt_no", *MONEY_FIELDS, "items")
        }
        self.dates = [re.compile(p, flags) for p in profile.datetime.dates]
        self.times = [re.compile(p, flags) for p in profile.datetime.times]
        self.date_pick = profile.datetime.pick

    @staticmethod
    def _compile(rule: FieldRule, flags: int) -> _Rule:
        return _Rule(
            [re.compile(p, flags) for p in rule.match],
            [re.compile(p, flags) for p in rule.exclude],
            rule.pick,
        )

    def parse(self, lines: list[str]) -> ParsedReceipt:
        try:
            return self._parse(lines)
        except Exception as exc:  # a parser bug must not lose the receipt
            return ParsedReceipt(error=f"parser failed: {type(exc).__name__}: {exc}")

    def _parse(self, lines: list[str]) -> ParsedReceipt:
        lines = [" ".join(line.split()) for line in lines]
        if not any(lines):
            return ParsedReceipt(error="no text on the receipt (printed as an image?)")
        out = ParsedReceipt()
        out.receipt_no = self._find(lines, self.rules["receipt_no"], _word)
        for name in MONEY_FIELDS:
            setattr(out, name, self._find(lines, self.rules[name], self._money, money=True))
        out.items = self._find(lines, self.rules["items"], _count)
        out.datetime = self._datetime(lines)
        missing = [name for name in self.required if getattr(out, name) is None]
        if missing:
            out.error = f"no {' and no '.join(missing)} found"
        return out

    def _money(self, text: str) -> int | None:
        return parse_amount(text, self.thousands)

    def _find(
        self,
        lines: list[str],
        rule: _Rule,
        value_of: Callable[[str], Any],
        money: bool = False,
    ) -> Any:
        for pattern in rule.match:
            found = []
            for index, line in enumerate(lines):
                m = pattern.search(line)
                if m is None or any(x.search(line) for x in rule.exclude):
                    continue
                rest = m["value"] if "value" in pattern.groupindex else line[m.end() :]
                value = value_of(rest or "")
                if value is None and money and index + 1 < len(lines):
                    value = _amount_alone(lines[index + 1], self._money)
                if value is not None:
                    found.append(value)
                    if rule.pick == "first":
                        break
            if found:
                return found[-1]
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
            day = date(_year(groups["y"]), _month(groups["m"]), int(groups["d"]))
        except (ValueError, KeyError, TypeError):
            return None
        clock = _clock(groups)
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

    def _time_in(self, text: str) -> tuple[int, int, int] | None:
        for pattern in self.times:
            for m in pattern.finditer(text):
                clock = _clock(m.groupdict())
                if clock is not None:
                    return clock
        return None


def _clock(groups: dict[str, str | None]) -> tuple[int, int, int] | None:
    if not groups.get("H") or not groups.get("M"):
        return None
    hour, minute = int(groups["H"] or 0), int(groups["M"] or 0)
    second = int(groups.get("S") or 0)
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
    m = _WORD.search(text.lstrip(" :#.=-"))
    return m[0].rstrip(".-") if m else None


def _count(text: str) -> int | None:
    return parse_count(text)


def _amount_alone(line: str, money: Callable[[str], int | None]) -> int | None:
    """The amount on a line that holds nothing else (a right-aligned figure
    printed under its label)."""
    stripped = re.sub(r"(?i)\b(?:rp|idr)\.?|[\s:=]", "", line)
    if not stripped or not re.fullmatch(r"[-(]?[\d.,]+-?\)?,?-?", stripped):
        return None
    return money(line)


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


def receipt_record(
    receipt: RawReceipt, parsed: ParsedReceipt, send_text: bool = True, raw: bool = True
) -> dict[str, Any]:
    """The ``data`` of a receipt event: parsed fields, how it ended, raw bytes."""
    data = parsed.fields()
    data.pop("error")
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

    def __init__(self, profile: EscposProfile, raw: bool = True) -> None:
        self.profile = profile
        self.raw = raw
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
            parsed = self.parser.parse(receipt.lines)
            out.append(
                (receipt_record(receipt, parsed, self.profile.send_text, self.raw), parsed.error)
            )
        return out
