"""Receipts as POS software prints them: exact money in any currency and
locale, labels anywhere and in columns, text placed where the printer puts it,
line endings, command lengths, image-only receipts, the CLI in a pipe."""

import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from agent.escpos import EscposProfile, ReceiptParser, ReceiptReader, tokenize
from agent.escpos.numbers import find_amounts, guess_decimal_mark, parse_amount
from agent.profiles import default_profiles_dir, load_profile, parse_profile
from wire.configfile import ConfigError

ESC, GS, FS, DC2 = b"\x1b", b"\x1d", b"\x1c", b"\x12"
ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden_escpos"


@pytest.fixture(scope="module")
def profile() -> EscposProfile:
    _, loaded = load_profile(default_profiles_dir(), "tapping-box/escpos-generic")
    assert isinstance(loaded, EscposProfile)
    return loaded


def with_locale(profile: EscposProfile, locale: str) -> EscposProfile:
    return msgspec.structs.replace(profile, locale=locale)


def read(profile: EscposProfile, data: bytes) -> list[dict]:
    reader = ReceiptReader(profile, raw=False, exact=True)
    return [{**r, "error": e} for r, e in reader.feed(data) + reader.end()]


# money


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$14.25", "14.25"),
        ("$ 14.25", "14.25"),
        ("14.25$", "14.25"),
        ("USD 14.25", "14.25"),
        ("14.25 USD", "14.25"),
        ("US$ 10.00", "10.00"),
        ("RM12.50", "12.50"),
        ("RM 1,234.50", "1234.50"),
        ("S$5.00", "5.00"),
        ("SGD 5.00", "5.00"),
        ("€3,50", "3.50"),
        ("3,50 €", "3.50"),
        ("£7.99", "7.99"),
        ("IDR 1.500.000,00", "1500000.00"),
        ("Rp1.500.000", "1500000"),
        ("Rp 1,500,000.00", "1500000.00"),
        ("1.500.000,00", "1500000.00"),
        ("Rp. 165.000,-", "165000"),
        ("(1.30)", "-1.30"),
        ("-$5.00", "-5.00"),
    ],
)
def test_amounts_keep_their_minor_units_with_any_currency_mark(text, value):
    assert parse_amount(text) == Decimal(value)
    assert str(parse_amount(text)) == value  # as printed, digit for digit


def test_an_ambiguous_amount_follows_the_decimal_mark_in_use():
    assert parse_amount("1.500", hint=",") == Decimal("1500")  # Indonesian
    assert parse_amount("1.500", hint=".") == Decimal("1.500")  # English
    assert parse_amount("1,500", hint=".") == Decimal("1500")
    assert parse_amount("1,500", hint=",") == Decimal("1.500")
    assert guess_decimal_mark(["BEER 13.00", "TOTAL 1.500"]) == "."
    assert guess_decimal_mark(["Nasi 1.250.000", "TOTAL 1,500"]) == ","
    assert guess_decimal_mark(["TOTAL 1.500"]) is None


def test_the_profile_locale_settles_what_the_receipt_leaves_open(profile):
    assert ReceiptParser(profile).parse(["TOTAL 1.500"]).total == Decimal("1500")
    english = ReceiptParser(with_locale(profile, "en"))
    assert english.parse(["TOTAL 1.500"]).total == Decimal("1.500")
    assert english.parse(["TOTAL 1,500"]).total == Decimal("1500")
    # the receipt's own unambiguous amounts win over the locale
    assert ReceiptParser(profile).parse(["Beer 13.00", "TOTAL 1.500"]).total == Decimal("1.500")
    assert english.parse(["Nasi 12.500,00", "TOTAL 1.500"]).total == Decimal("1500")


def test_a_currency_on_the_receipt_makes_three_digit_groups_thousands(profile):
    parser = ReceiptParser(profile)  # locale id: 45,000 alone would be 45.000
    assert parser.parse(["TOTAL 45,000"]).total == Decimal("45.000")
    assert parser.parse(["TOTAL Rp 45,000"]).total == Decimal("45000")
    assert parser.parse(["Kopi  Rp 25,000", "TOTAL 45,000"]).total == Decimal("45000")
    english = ReceiptParser(with_locale(profile, "en"))
    assert english.parse(["TOTAL 1.500"]).total == Decimal("1.500")
    assert english.parse(["TOTAL $1.500"]).total == Decimal("1500")


def test_an_unknown_locale_names_the_key(tmp_path):
    bad = tmp_path / "shop.yaml"
    bad.write_text("driver: escpos\nlocale: fr\n")
    with pytest.raises(ConfigError, match="locale"):
        parse_profile(bad)


def test_tax_in_parentheses_is_still_tax(profile):
    out = ReceiptParser(profile).parse(["TOTAL 110.000", "Termasuk PPN (10.000)"])
    assert (out.total, out.tax) == (Decimal("110000"), Decimal("10000"))
    out = ReceiptParser(with_locale(profile, "en")).parse(["Total $11.00", "Incl. tax ($1.00)"])
    assert (out.total, out.tax) == (Decimal("11.00"), Decimal("1.00"))


# labels


@pytest.mark.parametrize(
    ("rows", "field", "value"),
    [
        (["A local tax      1.30", "Total  $ 14.25"], "tax", "1.30"),
        (["Subtotal  12.95   Tax  1.30", "TOTAL 14.25"], "subtotal", "12.95"),
        (["Subtotal  12.95   Tax  1.30", "TOTAL 14.25"], "tax", "1.30"),
        (["Rate 8%  Taxable  10.00  Tax  0.80"], "tax", "0.80"),
        (["Cash 20.00   Order total   $ 14.25"], "total", "14.25"),
        (["0001111  TOTAL  12.34"], "total", "12.34"),
        (["Total    USD 14.25"], "total", "14.25"),
        (["TOTAL", "        RM 1,234.50"], "total", "1234.50"),
        (["Sub Total 144.000", "Total Item 6"], "total", None),
        (["Subtotal: $12.95 Tax: $1.30 Total: $14.25"], "subtotal", "12.95"),
        (["Subtotal: $12.95 Tax: $1.30 Total: $14.25"], "tax", "1.30"),
        (["Subtotal: $12.95 Tax: $1.30 Total: $14.25"], "total", "14.25"),
        (["Subtotal 12.50", "Total (incl. tax) 14.25"], "total", "14.25"),
        (["Subtotal 12.50", "Total (incl. tax) 14.25"], "tax", None),
        (["Sales Tax 8.875% 1.11", "Total Tax 1.11", "TOTAL 13.61"], "total", "13.61"),
        (["Total Savings 2.00", "Balance Due $13.61"], "total", "13.61"),
        (["Total Discount -2.00", "Amount Due: USD 13.61"], "total", "13.61"),
        (["VAT 10% (included)  (1.30)", "Total 14.25"], "tax", "1.30"),
        (["TAX INVOICE  #12345", "Tax 1.30", "Total 14.25"], "tax", "1.30"),
        (["Total: 3 items", "Amount due 14.25"], "total", "14.25"),
    ],
)
def test_labels_anywhere_on_a_line_and_in_columns(profile, rows, field, value):
    out = ReceiptParser(with_locale(profile, "en")).parse([*rows, "Thank you"])
    got = getattr(out, field)
    assert (None if got is None else str(got)) == value


@pytest.mark.parametrize(
    ("rows", "number"),
    [
        (["Invoice No: INV-2026-001"], "INV-2026-001"),
        (["Invoice #12345"], "12345"),
        (["Order #: 0003"], "0003"),
        (["Order N. 15050"], "15050"),
        (["Transaction ID: TRX8812"], "TRX8812"),
        (["Trx ID 8812"], "8812"),
        (["No. Transaksi: 2611-0042"], "2611-0042"),
        (["ID Transaksi 9981"], "9981"),
        (["Kode Transaksi : KT-0012"], "KT-0012"),
        (["No. Pesanan #A-17"], "A-17"),
        (["Bill# 5521"], "5521"),
        (["Nov. 9, 2022          No. 1234"], "1234"),
        (["Receipt No.", "R-000123"], "R-000123"),
        (["Nomor Struk", "00042"], "00042"),
        (["DATE                  SLIP #", "Feb. 22, 2019         12345"], "12345"),
        (["Shop No. 42.", "Table No: 7"], None),
        (["Order: Dine In"], None),
        (["Invoice 20261123-07"], "20261123-07"),
        (["Struk  ST/2611/9"], "ST/2611/9"),
        (["Order 2 items"], None),
    ],
)
def test_receipt_number_labels_in_indonesian_and_english(profile, rows, number):
    assert ReceiptParser(profile).parse([*rows, "TOTAL 1.000"]).receipt_no == number


@pytest.mark.parametrize(
    ("locale", "text", "stamp"),
    [
        ("id", "Tanggal 02/09/2026 10:00", "2026-09-02T10:00:00"),
        ("en", "Date 02/09/2026 10:00", "2026-02-09T10:00:00"),
        ("en-GB", "Date 02/09/2026 10:00", "2026-09-02T10:00:00"),
        ("id", "Tanggal 02/28/2026", "2026-02-28"),  # only month-first is a date
        ("en", "Date 28/02/2026", "2026-02-28"),  # only day-first is a date
        ("en", "2026-02-09 10:00", "2026-02-09T10:00:00"),  # year first: ISO order
        ("en", "Time: 8/21/2025, 9:41:58 PM", "2025-08-21T21:41:58"),
        ("en", "Monday 6th of April 2015 02:56:25 PM", "2015-04-06T14:56:25"),
        ("en", "Feb. 22, 2019 12:05 am", "2019-02-22T00:05:00"),
        ("id", "Sabtu, 1 Agustus 2026 12:30", "2026-08-01T12:30:00"),
    ],
)
def test_numeric_dates_by_the_locale(profile, locale, text, stamp):
    assert ReceiptParser(with_locale(profile, locale)).parse([text]).datetime == stamp


# where the printer puts the text


def dots(n: int) -> bytes:
    return bytes([n & 0xFF, n >> 8])


def test_columns_placed_with_esc_dollar_land_in_visual_order(profile):
    row = ESC + b"$" + dots(360) + b"185.80" + ESC + b"$" + dots(0) + b"TOTAL\n"
    [receipt] = read(profile, ESC + b"@" + b"BEER 13.00\n" + row + GS + b"V\x00")
    assert receipt["text"].split("\n")[1] == "TOTAL" + " " * 25 + "185.80"
    assert receipt["total"] == Decimal("185.80")


def test_relative_moves_margins_and_tabs(profile):
    data = (
        ESC + b"@"
        + GS + b"L" + dots(24) + b"Tax" + ESC + b"\\" + dots(120) + b"1.30\n"
        + ESC + b"D\x04\x14\x00" + b"\tTotal\t14.25\n"
        + GS + b"V\x00"
    )  # fmt: skip
    [receipt] = read(profile, data)
    # tab stops count from the left margin (GS L 24 dots = 2 characters)
    assert receipt["text"].split("\n") == ["  Tax          1.30", "      Total           14.25"]
    assert (receipt["tax"], receipt["total"]) == (Decimal("1.30"), Decimal("14.25"))


def test_justified_lines_sit_where_the_print_area_puts_them(profile):
    data = (
        GS + b"W" + dots(480)  # 40 characters
        + ESC + b"a\x01" + b"KOPI KITA\n"
        + ESC + b"a\x02" + b"TOTAL\n" + b"Rp 45.000\n"
        + ESC + b"a\x00" + b"Terima kasih\n"
    )  # fmt: skip
    [receipt] = read(profile, data)
    assert receipt["text"].split("\n") == [
        " " * 16 + "KOPI KITA",
        " " * 35 + "TOTAL",
        " " * 31 + "Rp 45.000",
        "Terima kasih",
    ]
    assert receipt["total"] == 45000


def test_a_position_far_past_the_paper_is_read_quickly(profile):
    # a garbled ESC $ can put text 5000 characters to the right: gaps are capped,
    # and runs of spaces never make the amount pattern backtrack
    data = b"TOTAL" + ESC + b"$" + dots(60000) + b"1.000\n" + b"(" + b" " * 400 + b"-\n"
    started = time.monotonic()
    [receipt] = read(profile, data)
    assert receipt["text"].split("\n")[0] == "TOTAL" + " " * 80 + "1.000"
    assert receipt["total"] == 1000
    assert find_amounts("(" + " " * 3000 + "-" + " " * 3000) == []
    assert time.monotonic() - started < 5


def test_wide_characters_take_their_width(profile):
    data = GS + b"!\x10" + b"TOTAL" + GS + b"!\x00" + ESC + b"$" + dots(240) + b"9.50\nX\n"
    [receipt] = read(profile, data)
    assert receipt["text"].split("\n")[0] == "TOTAL          9.50"


@pytest.mark.parametrize(
    ("ending", "stream"),
    [
        ("LF", b"Item 1.000\nTOTAL 2.000\nTerima kasih\n"),
        ("CRLF", b"Item 1.000\r\nTOTAL 2.000\r\nTerima kasih\r\n"),
        ("CR", b"Item 1.000\rTOTAL 2.000\rTerima kasih\r"),
        ("LFCR", b"Item 1.000\n\rTOTAL 2.000\n\rTerima kasih\n\r"),
    ],
)
def test_line_endings_as_printers_take_them(profile, ending, stream):
    [receipt] = read(profile, stream + GS + b"V\x00")
    assert receipt["text"].split("\n") == ["Item 1.000", "TOTAL 2.000", "Terima kasih"], ending
    assert receipt["total"] == 2000


def test_blank_lines_survive_every_line_ending(profile):
    for stream in (b"A\n\nB\n", b"A\r\n\r\nB\r\n", b"A\r\rB\r", b"A\n\r\n\rB\n\r"):
        assert read(profile, stream)[0]["text"] == "A\n\nB", stream


def test_cr_after_lf_style_lines_overprints_the_same_line(profile):
    # two-colour printing on impact printers: red text, CR, black text on the same line
    data = b"Line one\n" + ESC + b"r\x01" + b"Kitchen\r" + ESC + b"r\x00" + b"        #2\n"
    assert read(profile, data)[0]["text"] == "Line one\nKitchen #2"


# command lengths


@pytest.mark.parametrize(
    "command",
    [
        ESC + b"4",  # italic on
        ESC + b"B\x02\x03",  # beeper
        GS + b"j\x00",
        GS + b"z0\x01\x02",
        GS + b"Q0\x00" + dots(5) + dots(8) + b"TOTAL",  # 5 dots across, 8 down: 5 bytes
        FS + b"g1\x00\x00\x00\x00\x00" + dots(5) + b"TOTAL",  # NV user memory write
        FS + b"g2\x00\x00\x00\x00\x00" + dots(5),
        DC2 + b"q\x00",  # SII end of job
        GS + b"C0\x05\x01",  # serial counter print mode
        GS + b"C1\x01\x00\x09\x00\x01\x01",  # counter mode A
        GS + b"C2\x01\x00",
        FS + b"?\xa1\xa2",  # cancel a user-defined Kanji character
        b"\x10\x14\x03\x01\x02\x03\x04\x05",  # DLE DC4 3: real-time buzzer
        GS + b"8L" + bytes([9, 0, 0, 0]) + b"0p0\x01\x011\x01\x00\x01",  # graphics, 1x1
        GS + b"(L" + dots(6) + b"0p0\x01\x011",
    ],
)
def test_each_command_takes_exactly_its_documented_bytes(command):
    tokens = tokenize(command + b"Rp 5.000\n")
    text = b"".join(t.raw for t in tokens if t.kind == "text")
    assert text == b"Rp 5.000"


def test_images_with_only_stray_characters_are_image_only(profile):
    # an unknown command's parameter bytes printed as a letter or two
    raster = GS + b"v0\x00" + dots(1) + dots(1) + b"\xff"
    [receipt] = read(profile, raster + ESC + b"\x7fq" + b"\n" + raster + GS + b"V\x00")
    assert receipt["image_only"] is True and receipt["total"] is None


def test_service_tax_is_tax_not_service(profile):
    out = ReceiptParser(with_locale(profile, "en-MY")).parse(
        ["Service Tax 6%  RM 0.60", "Total RM 10.60"]
    )
    assert (out.service, out.tax, out.total) == (None, Decimal("0.60"), Decimal("10.60"))


def test_a_receipt_of_images_only_is_flagged_not_missing_a_total(profile):
    raster = GS + b"v0\x00" + dots(2) + dots(3) + b"TOTAL "  # 6 bytes of image that look like text
    graphics = GS + b"(L" + dots(10) + b"0p0\x01\x011" + b"PB1"  # 3 bytes of image
    [receipt] = read(profile, ESC + b"@" + raster + graphics + b"\n" + GS + b"V\x00")
    assert receipt["image_only"] is True
    assert receipt["error"].startswith("image_only")
    assert receipt["total"] is None


# the command line in a pipe


def test_receipts_cli_ends_quietly_when_the_reader_of_a_pipe_goes_away(tmp_path):
    capture = tmp_path / "day.bin"
    capture.write_bytes((GOLDEN / "mixed.bin").read_bytes() * 400)  # ~2000 receipts, ~500 KB
    assert shutil.which("bash") and shutil.which("head")
    script = (
        f'"{sys.executable}" -m agent receipts "{capture}" | head -1;'
        ' echo "status ${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, cwd=ROOT, timeout=120, check=False
    )
    [line] = result.stdout.decode().splitlines()
    assert '"receipt_no":"R-000124"' in line
    assert b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr
    assert result.stderr.decode().strip().endswith("status 0")
