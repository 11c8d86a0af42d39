"""The public corpus: ESC/POS byte streams written by other projects (see
``golden_escpos/corpus/README.md``), read with the shipped generic profile.

Every stream must give the receipts a person reads on it: how many, and for
each its receipt number, total and tax (exact, minor units as printed), whether
it printed only images, and lines of text that must come out as printed.

``python -m tests.agent.test_escpos_corpus`` prints the decode rate.
"""

import json
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.escpos import EscposProfile, ReceiptReader
from agent.profiles import default_profiles_dir, load_profile

CORPUS = Path(__file__).parent / "golden_escpos" / "corpus"
MANIFEST = json.loads((CORPUS / "corpus.json").read_text(encoding="utf-8"))
SAMPLES: list[dict[str, Any]] = MANIFEST["samples"]
FIELDS = ("receipt_no", "total", "tax")
_RULES = re.compile(r"[\u2500-\u257f|]")


def plain(line: str) -> str:
    """A printed line with borders and column gaps squeezed to single spaces."""
    return " ".join(_RULES.sub(" ", line).split())


def generic_profile() -> EscposProfile:
    _, profile = load_profile(default_profiles_dir(), MANIFEST["profile"])
    assert isinstance(profile, EscposProfile)
    return profile


def decode(profile: EscposProfile, data: bytes) -> list[dict[str, Any]]:
    reader = ReceiptReader(profile, raw=False, exact=True)
    return [{**record, "error": error} for record, error in reader.feed(data) + reader.end()]


def as_text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass
class Score:
    streams: int = 0
    receipts: int = 0
    fields: int = 0
    right: int = 0
    wrong: list[str] | None = None


def check(sample: dict[str, Any], got: list[dict[str, Any]]) -> list[str]:
    """What differs between what a person reads and what was decoded."""
    name, want = sample["file"], sample["receipts"]
    problems = []
    if len(got) != len(want):
        problems.append(f"{name}: {len(got)} receipts, expected {len(want)}")
    for n, (expect, record) in enumerate(zip(want, got, strict=False), 1):
        for field in FIELDS:
            if as_text(record[field]) != expect[field]:
                problems.append(
                    f"{name} #{n}: {field} {as_text(record[field])!r}, expected {expect[field]!r}"
                )
        if bool(record.get("image_only")) != expect.get("image_only", False):
            problems.append(f"{name} #{n}: image_only {record.get('image_only')!r}")
        lines = {plain(line) for line in record["text"].split("\n")}
        missing = [line for line in expect.get("lines", []) if line not in lines]
        problems += [f"{name} #{n}: no line {line!r}" for line in missing]
    return problems


def test_the_corpus_has_twenty_receipt_like_streams_with_sources_recorded():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    receipt_like = [s for s in SAMPLES if any(r["total"] or r["receipt_no"] for r in s["receipts"])]
    assert len(SAMPLES) >= 20 and len(receipt_like) >= 20
    for sample in SAMPLES:
        assert (CORPUS / sample["file"]).is_file(), sample["file"]
        assert sample["file"].split("/")[0] in readme
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.bin")}
    assert on_disk == {s["file"] for s in SAMPLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["file"] for s in SAMPLES])
def test_public_stream_decodes_as_a_person_reads_it(sample):
    got = decode(generic_profile(), (CORPUS / sample["file"]).read_bytes())
    assert check(sample, got) == []


def test_whatever_the_chunking_the_corpus_decodes_the_same():
    profile = generic_profile()
    for sample in SAMPLES[::5]:
        data = (CORPUS / sample["file"]).read_bytes()
        reader = ReceiptReader(profile, raw=False, exact=True)
        records = []
        for pos in range(0, len(data), 7):
            records += reader.feed(data[pos : pos + 7])
        records += reader.end()
        assert [r for r, _ in records] == [
            {k: v for k, v in r.items() if k != "error"} for r in decode(profile, data)
        ]


def test_tax_printed_per_rate_is_summed_by_a_profile_that_asks_for_it():
    profile = generic_profile()
    tax = msgspec.structs.replace(profile.labels.tax, pick="sum")
    summing = msgspec.structs.replace(
        profile, labels=msgspec.structs.replace(profile.labels, tax=tax)
    )
    [record] = decode(summing, (CORPUS / "receiptline" / "receipt2-escpos.bin").read_bytes())
    assert record["tax"] == Decimal("10.80")


def score() -> Score:
    profile = generic_profile()
    result = Score(wrong=[])
    for sample in SAMPLES:
        got = decode(profile, (CORPUS / sample["file"]).read_bytes())
        problems = check(sample, got)
        result.streams += 1
        result.receipts += len(sample["receipts"])
        result.fields += len(sample["receipts"]) * len(FIELDS)
        result.right += len(sample["receipts"]) * len(FIELDS) - len(
            [p for p in problems if any(f" {f} " in p for f in FIELDS)]
        )
        assert result.wrong is not None
        result.wrong += problems
    return result


def main() -> int:
    result = score()
    whole = sum(1 for s in SAMPLES if not check(s, decode(generic_profile(), read(s))))
    print(
        f"{result.streams} streams, {result.receipts} receipts;"
        f" receipt_no/total/tax right: {result.right}/{result.fields}"
        f" ({100 * result.right / max(1, result.fields):.1f} %);"
        f" streams decoded entirely right: {whole}/{result.streams}"
        f" ({100 * whole / result.streams:.1f} %)"
    )
    for problem in result.wrong or []:
        print("  " + problem)
    return 0 if not result.wrong else 1


def read(sample: dict[str, Any]) -> bytes:
    return (CORPUS / sample["file"]).read_bytes()


if __name__ == "__main__":
    sys.exit(main())
