"""Golden captures (restaurant, hotel, parking, a mixed day) through the reader
and through ``pantau-agent receipts`` as a subprocess."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.escpos import ReceiptReader
from agent.profiles import default_profiles_dir, load_profile
from tests.agent import escpos_samples as samples

GOLDEN = Path(__file__).parent / "golden_escpos"
CASES = sorted(p.stem for p in GOLDEN.glob("*.bin"))
ROOT = Path(__file__).resolve().parents[2]


def expected(name: str) -> list[dict]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_golden_files_are_present_and_reproducible():
    assert sorted(samples.GOLDEN) == CASES
    for name in CASES:
        assert (GOLDEN / f"{name}.bin").read_bytes() == samples.GOLDEN[name](), name


@pytest.mark.parametrize("name", CASES)
def test_golden_capture_gives_the_expected_receipts(name):
    _, profile = load_profile(default_profiles_dir(), "tapping-box/escpos-generic")
    data = (GOLDEN / f"{name}.bin").read_bytes()
    reader = ReceiptReader(profile)
    records = reader.feed(data) + reader.end()
    got = [{**{k: r[k] for k in expected(name)[0] if k != "error"}, "error": e} for r, e in records]
    assert got == expected(name)
    for record, _ in records:
        raw = base64.b64decode(record["raw_b64"])
        assert raw in data and len(raw) == record["bytes"]
        assert record["raw_truncated"] is False
        # binary payloads (logo, QR, barcode data) never leak into the text
        assert "999.999" not in record["text"] and "PB1 1.000" not in record["text"]


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "receipts", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_receipts_cli_prints_one_json_line_per_receipt():
    result = run_cli("--profile", "tapping-box/escpos-generic", str(GOLDEN / "mixed.bin"))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [{k: line[k] for k in expected("mixed")[0]} for line in lines] == expected("mixed")
    assert all("raw_b64" not in line for line in lines)
    assert b"5 receipts, 1 with errors" in result.stderr


def test_receipts_cli_reads_standard_input():
    result = run_cli("-", stdin=(GOLDEN / "hotel.bin").read_bytes())
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert (line["receipt_no"], line["total"], line["tax"], line["error"]) == (
        "F-2026-0451",
        3021975,
        299475,
        None,
    )


def test_receipts_cli_unreadable_file_exits_2_naming_it(tmp_path):
    missing = tmp_path / "capture.bin"
    result = run_cli(str(missing))
    assert result.returncode == 2
    assert f"{missing}: cannot read" in result.stderr.decode()
    assert result.stdout == b""


def test_receipts_cli_bad_profile_exits_2_naming_the_file(tmp_path):
    profiles = tmp_path / "profiles"
    (profiles / "tapping-box").mkdir(parents=True)
    bad = profiles / "tapping-box" / "shop.yaml"
    bad.write_text("driver: escpos\nlabels:\n  total:\n    match: ['(']\n")
    result = run_cli(
        "--profile", "tapping-box/shop", "--profiles-dir", str(profiles), str(GOLDEN / "hotel.bin")
    )
    assert result.returncode == 2
    assert f"{bad}: labels.total.match[0]: invalid regular expression" in result.stderr.decode()
    missing = run_cli("--profile", "tapping-box/none", str(GOLDEN / "hotel.bin"))
    assert missing.returncode == 2 and b"none.yaml" in missing.stderr


def test_receipts_cli_refuses_a_profile_of_another_driver(tmp_path):
    result = run_cli("--profile", "simulated/counter", str(GOLDEN / "hotel.bin"))
    assert result.returncode == 2
    assert b"not escpos" in result.stderr
