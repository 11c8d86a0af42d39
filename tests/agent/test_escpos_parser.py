"""Receipt text → fields with the shipped generic profile; number formats,
label traps, code pages, receipt boundaries, size caps and profile errors."""

import random
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from agent.escpos import EscposProfile, ReceiptAssembler, ReceiptParser, ReceiptReader
from agent.escpos.numbers import amount_value, find_amounts, parse_amount, parse_count
from agent.profiles import all_profiles, default_profiles_dir, load_profile, parse_profile
from tests.agent import escpos_samples as samples
from wire.configfile import ConfigError

ESC, GS = b"\x1b", b"\x1d"


@pytest.fixture(scope="module")
def profile() -> EscposProfile:
    _, loaded = load_profile(default_profiles_dir(), "tapping-box/escpos-generic")
    return loaded


@pytest.fixture(scope="module")
def parser(profile) -> ReceiptParser:
    return ReceiptParser(profile)


# numbers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Rp 1.250.000", 1250000),
        ("1.250.000,00", 1250000),
        ("1,250,000", 1250000),
        ("1,250,000.00", 1250000),
        ("Rp.45.000", 45000),
        ("Rp45.000", 45000),
        ("IDR 45,000", 45000),  # a currency has no three decimals: thousands
        ("45.000", 45000),
        ("12500", 12500),
        ("1250,00", Decimal("1250.00")),
        ("999,50", Decimal("999.50")),  # minor units kept as printed
        ("12.345,49", Decimal("12345.49")),
        ("-5.000", -5000),
        ("Rp -5.000", -5000),
        ("-Rp 5.000", -5000),
        ("5.000-", -5000),
        ("(5.000)", -5000),
        ("Rp. 165.000,-", 165000),
        ("PB1 10%    15.000", 15000),
        ("Tax (11%) 299,475.00", 299475),
        ("  2 x 45.000     90.000", 90000),
        ("10%", None),
        ("10,5%", None),
        ("no amount here", None),
        ("", None),
    ],
)
def test_amounts_in_indonesian_and_other_formats(text, value):
    assert parse_amount(text) == value


def test_fixed_thousands_separator_overrides_the_guess():
    assert amount_value("1.500", "comma") == Decimal("1.500")
    assert amount_value("1,500", "dot") == Decimal("1.500")
    assert amount_value("1.500", "dot") == 1500
    assert find_amounts("Rp 1.500 dan 2.000") == [1500, 2000]


def test_counts():
    assert parse_count(": 6 pcs") == 6
    assert parse_count("1.500") is None
    assert parse_count("10%") is None


# parsing lines


def lines(text: str) -> list[str]:
    return text.strip("\n").split("\n")


RESTAURANT = """
RM PADANG JAYA
No. Nota : 0001/XI/26
Tanggal : 23/11/2026 19:30
Rendang          2   90.000
Sub Total            144.000
Svc 5%                 7.200
PB1 10%               15.120
TOTAL             Rp 166.320
Total Item                 6
Tunai                200.000
Kembali               33.680
"""


def test_restaurant_fields_and_traps(parser):
    out = parser.parse(lines(RESTAURANT))
    assert out.fields() == {
        "receipt_no": "0001/XI/26",
        "datetime": "2026-11-23T19:30:00",
        "subtotal": 144000,
        "service": 7200,
        "tax": 15120,
        "total": 166320,
        "items": 6,
        "error": None,
    }


def test_sub_total_alone_is_never_the_total(parser):
    out = parser.parse(["Sub Total 50.000", "Total Item 3", "Total Qty 5", "Tunai 100.000"])
    assert out.subtotal == 50000
    assert out.total is None
    assert out.items == 3
    assert out.error == "no total found"


@pytest.mark.parametrize(
    "label",
    [
        "PB1",
        "PB 1",
        "PB-1",
        "PBJT",
        "Pajak",
        "Pajak Restoran",
        "Tax",
        "Restaurant Tax",
        "PPN",
        "VAT",
    ],
)
def test_tax_labels(parser, label):
    out = parser.parse(["Subtotal 100.000", f"{label} 10% 10.000", "TOTAL 110.000"])
    assert (out.tax, out.total) == (10000, 110000)


@pytest.mark.parametrize("label", ["Service", "Svc", "Service Charge", "Svc Chg", "S.C.", "SC 5%"])
def test_service_labels(parser, label):
    out = parser.parse([f"{label} 5.000", "Tax 10.500", "TOTAL 115.500"])
    assert (out.service, out.tax) == (5000, 10500)


def test_a_sentence_about_included_tax_is_not_a_tax_amount(parser):
    out = parser.parse(["TOTAL 50.000", "Harga sudah termasuk pajak"])
    assert out.tax is None


def test_included_tax_with_its_amount_is_the_tax(parser):
    out = parser.parse(["TOTAL 50.000", "Pajak sudah termasuk 4.545"])
    assert out.tax == 4545


@pytest.mark.parametrize(
    ("line", "total"),
    [
        ("GRAND TOTAL IDR 3,021,975.00", 3021975),
        ("Total Bayar : Rp 75.000", 75000),
        ("TOTAL: 12.500", 12500),
        ("Jumlah Rp 9.000", 9000),
        ("TARIF : Rp.6.000", 6000),
    ],
)
def test_total_labels(parser, line, total):
    assert parser.parse(["Total Item 2", "Total Room Charge 999.000", line]).total == total


def test_grand_total_wins_over_a_plain_total(parser):
    out = parser.parse(["TOTAL 100.000", "Diskon -10.000", "GRAND TOTAL 90.000"])
    assert out.total == 90000


def test_amount_printed_under_its_label(parser):
    out = parser.parse(["TOTAL", "      Rp 1.375.000,00", "PB1", "125.000"])
    assert (out.total, out.tax) == (1375000, 125000)


def test_label_without_any_amount_gives_nothing(parser):
    out = parser.parse(["TOTAL", "Terima kasih", "Tax"])
    assert out.total is None and out.tax is None


@pytest.mark.parametrize(
    ("text", "stamp"),
    [
        ("Tgl: 23/11/2026 Jam: 14:05", "2026-11-23T14:05:00"),
        ("Date 23-11-26 08:15:59", "2026-11-23T08:15:59"),
        ("2026-11-23 21:07:00 Kasir A", "2026-11-23T21:07:00"),
        ("23 Nov 2026 09.15", "2026-11-23T09:15:00"),
        ("Sabtu, 1 Agustus 2026", "2026-08-01"),
        ("Tanggal 31/02/2026", None),  # no such day
    ],
)
def test_dates_and_times(parser, text, stamp):
    assert parser.parse([text, "TOTAL 1.000"]).datetime == stamp


def test_time_on_the_line_after_the_date(parser):
    assert parser.parse(["Tgl 01/12/2026", "Jam 07:45", "TOTAL 5.000"]).datetime == (
        "2026-12-01T07:45:00"
    )


def test_parking_takes_the_exit_time(parser):
    out = parser.parse(["Masuk : 23-11-2026 08:02:11", "Keluar : 23-11-2026 10:15:40"])
    assert out.datetime == "2026-11-23T10:15:40"


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("No. Struk: R-000123", "R-000123"),
        ("Bill No : B/2611/77", "B/2611/77"),
        ("Receipt #: 98765", "98765"),
        ("Nota: KK/2611/0042", "KK/2611/0042"),
        ("No: 42", "42"),
        ("No. Tiket : PK-88213", "PK-88213"),
    ],
)
def test_receipt_numbers(parser, line, number):
    assert parser.parse(["No. Meja: 7", "No Telp 0812", line]).receipt_no == number


def test_missing_fields_are_none_and_only_total_is_required(parser):
    out = parser.parse(["WARUNG", "TOTAL 20.000"])
    assert out.fields() == {
        "receipt_no": None,
        "datetime": None,
        "subtotal": None,
        "service": None,
        "tax": None,
        "total": 20000,
        "items": None,
        "error": None,
    }


def test_garbage_text_gives_an_error_not_an_exception(parser):
    rng = random.Random(1)
    for _ in range(50):
        junk = [
            "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 60)))
            for _ in range(8)
        ]
        out = parser.parse(junk)
        assert out.total is not None or out.error is not None


def test_no_text_at_all(parser):
    assert parser.parse(["", "  "]).error == "no text on the receipt (printed as an image?)"


# bytes → receipts


def read_all(profile: EscposProfile, data: bytes) -> list[tuple[dict, str | None]]:
    reader = ReceiptReader(profile)
    return reader.feed(data) + reader.end()


def test_code_page_from_profile_and_switched_by_esc_t(profile):
    data = (
        b"Caf\x82 Ol\x82\n"  # cp858 (the profile's code page): é is 0x82
        + ESC
        + b"t\x10"
        + b"Caf\xe9 Bistro\n"  # ESC t 16: cp1252, é is 0xE9
        + ESC
        + b"@"
        + b"Cr\x88pes\n"  # ESC @ back to cp858: ê is 0x88
        + b"TOTAL 10.000\n"
        + GS
        + b"V\x00"
    )
    [(record, error)] = read_all(profile, data)
    assert record["text"].split("\n")[:3] == ["Café Olé", "Café Bistro", "Crêpes"]
    assert error is None


def test_unknown_code_page_number_keeps_the_current_one(profile):
    [(record, _)] = read_all(profile, ESC + b"t\xc8" + b"Caf\x82\nTOTAL 1\n" + GS + b"V\x00")
    assert record["text"].startswith("Café")


def test_nothing_printed_is_not_a_receipt(profile):
    data = ESC + b"@" + b"\x10\x04\x01" + ESC + b"p\x00\x19\xfa" + b"\n \n" + GS + b"V\x00"
    assert read_all(profile, data * 3) == []


def test_idle_gap_ends_a_receipt_without_a_cut(profile):
    assembler = ReceiptAssembler(idle_gap=2.0)
    assert assembler.feed(b"PARKIR\nTARIF 5.000\n", now=100.0) == []
    assert assembler.idle(101.9) == []
    [receipt] = assembler.idle(102.0)
    assert (receipt.ended_by, receipt.lines) == ("idle", ["PARKIR", "TARIF 5.000"])
    assembler.feed(b"SECOND\n", now=103.0)
    [first] = assembler.feed(b"THIRD\n", now=106.0)  # the gap before new bytes ends the last one
    assert first.lines == ["SECOND"]
    assert assembler.end()[0].lines == ["THIRD"]


def test_idle_gap_zero_turns_it_off():
    assembler = ReceiptAssembler(idle_gap=0)
    assembler.feed(b"A\n", now=0.0)
    assert assembler.idle(1e9) == []


def test_raw_bytes_past_the_cap_are_counted_not_kept(profile):
    small = msgspec.structs.replace(profile, max_receipt_bytes=2048)
    logo = samples.Receipt().raster(width_bytes=72, height=100).bytes()  # 7 kB
    data = logo + b"TOTAL 50.000\n" + GS + b"V\x00"
    [(record, error)] = read_all(small, data)
    assert record["bytes"] == len(data)
    assert record["raw_truncated"] is True
    assert len(__import__("base64").b64decode(record["raw_b64"])) == 2048
    assert (record["total"], error) == (50000, None)


def test_too_many_lines_split_the_receipt(profile):
    short = msgspec.structs.replace(profile, max_lines=10)
    [(first, _), (second, _)] = read_all(short, b"line\n" * 15 + b"TOTAL 1.000\n")
    assert first["ended_by"] == "size" and len(first["text"].split("\n")) == 10
    assert second["total"] == 1000 and second["ended_by"] == "end"


def test_receipts_are_the_same_whatever_the_chunking(profile):
    data = samples.restaurant() + samples.crlf_receipt() + samples.image_only()
    whole = read_all(profile, data)
    assert [r["receipt_no"] for r, _ in whole] == ["R-000123", "KK/2611/0042", None]
    for offset in range(1, len(data)):
        reader = ReceiptReader(profile)
        got = reader.feed(data[:offset]) + reader.feed(data[offset:]) + reader.end()
        assert got == whole, f"split at byte {offset}"
    reader = ReceiptReader(profile)
    got = [r for i in range(len(data)) for r in reader.feed(data[i : i + 1])] + reader.end()
    assert got == whole


# profiles


def test_every_shipped_tapping_box_profile_loads():
    names = [n for n in all_profiles(default_profiles_dir()) if n.startswith("tapping-box/")]
    assert "tapping-box/escpos-generic" in names
    for name in names:
        _, loaded = load_profile(default_profiles_dir(), name)
        assert isinstance(loaded, EscposProfile)
        ReceiptParser(loaded)


def write_profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("driver: escpos\n" + body)
    return path


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        (
            "labels:\n  total:\n    match: ['^total', '(unclosed']\n",
            "labels.total.match[1]",
            "invalid regular expression",
        ),
        ("code_page: cp9999\n", "code_page", "unknown code page"),
        ("code_pages: {16: klingon}\n", "code_pages", "ESC t 16: unknown code page 'klingon'"),
        ("code_pages: {300: cp437}\n", "code_pages", "ESC t numbers are 0-255, got 300"),
        ("datetime:\n  dates: ['(?P<d>\\d+)/(?P<m>\\d+)']\n", "datetime.dates[0]", "missing y"),
        ("datetime:\n  times: ['(\\d+):(\\d+)']\n", "datetime.times[0]", "(?P<H>..)"),
        ("idle_gap: soon\n", "idle_gap", "invalid duration"),
        ("max_receipt_bytes: 10\n", "max_receipt_bytes", "Expected `int` >= 1024 (got 10)"),
        ("max_lines: 20000\n", "max_lines", "Expected `int` <= 10000 (got 20000)"),
        ("labels:\n  totl: {match: []}\n", "labels.totl", "unknown key"),
        ("required: [colour]\n", "required[0]", "Invalid enum value 'colour'"),
        ("labels:\n  total:\n    pick: middle\n", "labels.total.pick", "Invalid enum value"),
        ("labels:\n  tax:\n    exclude: [42]\n", "labels.tax.exclude[0]", "expected a regular"),
    ],
)
def test_a_broken_profile_names_the_file_and_the_key(tmp_path, body, where, says):
    path = write_profile(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        parse_profile(path)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: {where}: ")
    assert says in problem


def test_the_largest_receipt_event_still_fits_the_wire_limit(profile):
    import json

    import wire

    big = msgspec.structs.replace(profile, max_receipt_bytes=98304, max_lines=10000)
    logo = samples.Receipt().raster(width_bytes=72, height=1000).bytes()  # 72 kB
    text = (bytes(range(0x80, 0x100)) * 2 + b"\n") * 800  # ~410 kB of non-ASCII text
    [(record, error)] = read_all(big, logo + text + b"TOTAL 1.000\n")
    assert record["raw_truncated"] is True and record["text_truncated"] is True
    # the message as agent/app.py builds it from the event
    doc = {"site": "s", "device": "tap1", "kind": "receipt", "ts": 1, "data": record}
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    payload = b'{"v":1,"gateway":"gw-1","seq":1,' + body[1:]
    event = wire.decode("events", payload)
    assert len(payload) <= wire.MAX_PAYLOAD_BYTES
    assert event.data["bytes"] == len(logo + text) + len(b"TOTAL 1.000\n")
    assert error is None  # the total past the text cap was still read


def test_profile_code_page_table_overrides_epson_numbers(profile):
    own = msgspec.structs.replace(profile, code_pages={16: "cp437"})
    data = ESC + b"t\x10" + b"Caf\x82\nTOTAL 1\n" + GS + b"V\x00"
    assert read_all(own, data)[0][0]["text"].startswith("Café")  # cp437, not cp1252
    assert read_all(profile, data)[0][0]["text"].startswith("Caf\u201a")  # cp1252


def test_thousands_setting_of_the_profile_is_used(profile):
    comma = ReceiptParser(msgspec.structs.replace(profile, thousands="comma"))
    assert comma.parse(["TOTAL 1.500"]).total == Decimal("1.500")  # one and a half
    assert ReceiptParser(profile).parse(["TOTAL 1.500"]).total == 1500
