"""Money amounts as printed on receipts, kept exact (``Decimal``, minor units
as printed: ``1.250.000,00`` is ``Decimal("1250000.00")``, ``$ 14.25`` is
``Decimal("14.25")``).

Accepted: digits with thousands separators and a decimal mark, a currency
symbol or code before or after the amount, spaced or glued (``Rp 1.250.000``,
``Rp.45.000``, ``IDR 45,000``, ``$14.25``, ``14.25 USD``, ``RM12.50``,
``S$ 5.00``, ``€3,50``, ``165.000,-``), and negatives (discounts) written
``-5.000``, ``Rp -5.000``, ``-Rp 5.000``, ``5.000-`` or ``(5.000)``.
Percentages (``10%``) are never amounts, nor are digits glued to letters
(``PB1``, ``A05``, ``T0123``).

Separators, with ``thousands: auto`` (the default):

- both ``.`` and ``,`` present: the last one is the decimal mark;
- one kind present several times: thousands (``1.250.000``, ``1,250,000``);
- one kind present once with one, two or more than three digits after it:
  the decimal mark (``14.25``, ``1250,00``);
- one kind present once with exactly three digits after it (``1.500``,
  ``45,000``) is ambiguous. The receipt's own unambiguous amounts decide (a
  receipt that prints ``13.00`` writes ``1.500`` for one and a half); else a
  currency mark on the amount or on the receipt makes it thousands (the
  currencies printed on receipts have at most two decimals: ``Rp 45,000`` is
  forty-five thousand); else the profile's ``locale`` (``id``: ``1.500`` is
  fifteen hundred, ``1,500`` one and a half; ``en``: the other way round).

``thousands: dot`` or ``comma`` fixes the thousands separator instead.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Thousands = Literal["auto", "dot", "comma"]
DecimalMark = Literal[".", ","]


@dataclass(frozen=True, slots=True)
class LocaleRules:
    """How a locale prints money and dates."""

    decimal_mark: DecimalMark
    day_first: bool


LOCALES: dict[str, LocaleRules] = {
    "id": LocaleRules(",", day_first=True),
    "id-ID": LocaleRules(",", day_first=True),
    "en": LocaleRules(".", day_first=False),
    "en-US": LocaleRules(".", day_first=False),
    "en-GB": LocaleRules(".", day_first=True),
    "en-AU": LocaleRules(".", day_first=True),
    "en-SG": LocaleRules(".", day_first=True),
    "en-MY": LocaleRules(".", day_first=True),
    "en-IN": LocaleRules(".", day_first=True),
    "ms": LocaleRules(".", day_first=True),
    "ms-MY": LocaleRules(".", day_first=True),
}
"""Locale names a profile may give (``locale:``)."""

CURRENCY = (
    r"(?:rp\.?|idr|us\$|usd|s\$|sgd|rm|myr|a\$|aud|nz\$|nzd|hk\$|hkd|nt\$|twd|c\$|cad"
    r"|r\$|brl|eur|gbp|jpy|cny|rmb|php|thb|inr|vnd|krw|chf|[$€£¥₱฿₹₫₩])"
)
"""Currency symbols and ISO codes printed next to amounts (case-insensitive)."""

_AMOUNT = re.compile(
    rf"""
    (?<![A-WYZa-wyz0-9_.,$€£¥])   # not inside a word or a number ("PB1"); "2x15.000" is fine
    (?P<open>\()?\s*+           # possessive: runs of spaces between columns never backtrack
    (?P<sign>[-\u2212])?\s*+
    (?:(?P<cur>{CURRENCY})\s*+)?
    (?P<sign2>[-\u2212])?\s*+
    (?<!\d)(?<!\d[.,])
    (?P<num>\d{{1,3}}(?:[.,]\d{{3}})+(?:[.,]\d{{1,2}})?|\d+(?:[.,]\d{{1,3}})?)
    (?!\d|%|\s*%|[.,]\d)
    (?P<trail>-(?!\d))?
    (?:,-)?
    (?:\s?(?P<cur2>{CURRENCY})(?![A-Za-z]))?
    (?P<close>\))?
    """,
    re.IGNORECASE | re.VERBOSE,
)

_INTEGER = re.compile(r"(?<![\d.,])(\d{1,6})(?![\d%]|[.,]\d)")


def _decimal_mark(num: str, thousands: Thousands, hint: str) -> str:
    """The decimal mark used in ``num`` ("" when it has none)."""
    if thousands == "dot":
        return "," if "," in num else ""
    if thousands == "comma":
        return "." if "." in num else ""
    dots, commas = num.count("."), num.count(",")
    if dots and commas:
        return "," if num.rfind(",") > num.rfind(".") else "."
    if dots + commas != 1:
        return ""
    sep = "." if dots else ","
    whole, _, frac = num.partition(sep)
    if len(frac) != 3 or len(whole) > 3:
        return sep
    return sep if sep == hint else ""


def amount_value(num: str, thousands: Thousands = "auto", hint: str = ",") -> Decimal:
    """The exact value of digits with separators (no sign, no currency);
    ``hint`` is the decimal mark that settles ``1.500``-like amounts (``""``:
    they are thousands)."""
    mark = _decimal_mark(num, thousands, hint)
    if mark:
        whole, _, frac = num.rpartition(mark)
        whole = whole or "0"
    else:
        whole, frac = num, ""
    digits = re.sub(r"[.,]", "", whole) or "0"
    return Decimal(f"{digits}.{frac}" if frac else digits)


def amount_spans(
    text: str, thousands: Thousands = "auto", hint: str = ",", by_currency: bool = True
) -> list[tuple[int, int, Decimal]]:
    """Every money amount in ``text`` with where it starts and ends, left to
    right. ``hint`` settles ``1.500``-like amounts, except (``by_currency``)
    on an amount with a currency mark, where they are thousands."""
    out = []
    for m in _AMOUNT.finditer(text):
        marked = by_currency and bool(m["cur"] or m["cur2"])
        value = amount_value(m["num"], thousands, "" if marked else hint)
        negative = bool(m["sign"] or m["sign2"] or m["trail"] or (m["open"] and m["close"]))
        start = m.start() + len(m[0]) - len(m[0].lstrip())
        out.append((start, m.end(), -value if negative else value))
    return out


def find_amounts(
    text: str, thousands: Thousands = "auto", hint: str = ",", by_currency: bool = True
) -> list[Decimal]:
    """Every money amount in ``text``, left to right (see :func:`amount_spans`)."""
    return [value for _, _, value in amount_spans(text, thousands, hint, by_currency)]


def parse_amount(
    text: str, thousands: Thousands = "auto", hint: str = ",", by_currency: bool = True
) -> Decimal | None:
    """The last money amount in ``text`` (the right-hand column), or None."""
    amounts = find_amounts(text, thousands, hint, by_currency)
    return amounts[-1] if amounts else None


def guess_decimal_mark(lines: Iterable[str]) -> DecimalMark | None:
    """The decimal mark a receipt's unambiguous amounts show, or None.

    ``1.250.000`` and ``1.250.000,00`` say the mark is ``,``; ``13.00`` and
    ``1,250.00`` say it is ``.``. Amounts like ``1.500`` say nothing."""
    votes = {".": 0, ",": 0}
    for line in lines:
        for m in _AMOUNT.finditer(line):
            num = m["num"]
            dots, commas = num.count("."), num.count(",")
            if dots and commas:
                votes["," if num.rfind(",") > num.rfind(".") else "."] += 2
            elif dots > 1:
                votes[","] += 2
            elif commas > 1:
                votes["."] += 2
            elif dots + commas == 1:
                sep = "." if dots else ","
                if len(num) - num.index(sep) - 1 in (1, 2):
                    votes[sep] += 1
    if votes["."] == votes[","]:
        return None
    return "." if votes["."] > votes[","] else ","


def shows_currency(lines: Iterable[str]) -> bool:
    """True when an amount on the receipt carries a currency mark."""
    return any(m["cur"] or m["cur2"] for line in lines for m in _AMOUNT.finditer(line))


def parse_count(text: str) -> int | None:
    """The first plain whole number in ``text`` (an item count), or None."""
    m = _INTEGER.search(text)
    return int(m[1]) if m else None
