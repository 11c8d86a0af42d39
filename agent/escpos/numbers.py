"""Money amounts as printed on receipts, turned into whole rupiah.

Accepted: ``Rp 1.250.000``, ``Rp.45.000``, ``IDR 45,000``, ``1.250.000,00``,
``1,250,000``, ``1,250,000.00``, ``45.000``, ``12500``, and negatives
(discounts) written ``-5.000``, ``Rp -5.000``, ``-Rp 5.000``, ``5.000-`` or
``(5.000)``. Percentages (``10%``) are never amounts.

Separators, with ``thousands: auto`` (the default):

- both ``.`` and ``,`` present: the last one is the decimal mark;
- one kind present several times: thousands (``1.250.000``, ``1,250,000``);
- one kind present once: thousands when exactly three digits follow
  (``45.000`` is 45000), decimal mark when one or two follow (``1250,00``).

``thousands: dot`` or ``comma`` fixes the thousands separator instead.
Rupiah has no minor unit in use, so a decimal part is rounded to the nearest
whole rupiah, halves away from zero: ``1.250.000,00`` is 1250000 and
``999,50`` is 1000.
"""

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Thousands = Literal["auto", "dot", "comma"]

_AMOUNT = re.compile(
    r"""
    (?<![A-WYZa-wyz0-9_.,])   # not inside a word or a number ("PB1"); "2x15.000" is fine
    (?P<open>\()?\s*
    (?P<sign>[-\u2212])?\s*
    (?:(?:rp|idr)\.?\s*)?
    (?P<sign2>[-\u2212])?\s*
    (?<!\d)(?<!\d[.,])
    (?P<num>\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)
    (?!\d|%|\s*%|[.,]\d)
    (?P<trail>-(?!\d))?
    (?P<close>\))?
    """,
    re.IGNORECASE | re.VERBOSE,
)

_INTEGER = re.compile(r"(?<![\d.,])(\d{1,6})(?![\d%]|[.,]\d)")


def amount_value(num: str, thousands: Thousands = "auto") -> int:
    """The whole-rupiah value of digits with separators (no sign, no currency)."""
    if thousands == "dot":
        decimal_mark = ","
    elif thousands == "comma":
        decimal_mark = "."
    else:
        dots, commas = num.count("."), num.count(",")
        if dots and commas:
            decimal_mark = "," if num.rfind(",") > num.rfind(".") else "."
        elif dots + commas == 1:
            sep = "." if dots else ","
            decimal_mark = sep if len(num) - num.index(sep) - 1 != 3 else ""
        else:
            decimal_mark = ""
    if decimal_mark:
        whole, _, frac = num.rpartition(decimal_mark)
        if not whole:  # ",50" - no whole part
            whole, frac = frac, ""
    else:
        whole, frac = num, ""
    digits = re.sub(r"[.,]", "", whole)
    value = Decimal(f"{digits}.{frac or '0'}")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def find_amounts(text: str, thousands: Thousands = "auto") -> list[int]:
    """Every money amount in ``text``, left to right."""
    out = []
    for m in _AMOUNT.finditer(text):
        value = amount_value(m["num"], thousands)
        negative = bool(m["sign"] or m["sign2"] or m["trail"] or (m["open"] and m["close"]))
        out.append(-value if negative else value)
    return out


def parse_amount(text: str, thousands: Thousands = "auto") -> int | None:
    """The last money amount in ``text`` (the right-hand column), or None."""
    amounts = find_amounts(text, thousands)
    return amounts[-1] if amounts else None


def parse_count(text: str) -> int | None:
    """The first plain whole number in ``text`` (an item count), or None."""
    m = _INTEGER.search(text)
    return int(m[1]) if m else None
