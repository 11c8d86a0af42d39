"""``pantau-agent receipts``: read a captured POS → printer byte stream on site.

Prints one JSON line per receipt, as the tapping box would send it (without
the raw bytes): ``receipt_no``, ``datetime``, ``subtotal``, ``service``,
``tax``, ``total``, ``items`` (amounts exactly as printed, ``1250000.00``,
null when absent), how the receipt ended, its size, and ``error`` (null when
it was read). A capture file has no timing, so receipts end at cut commands
and at the end of the file.

Exit status: 0 when the file was read (even if some receipts have errors; they
are counted on standard error), 2 for a bad profile or an unreadable file. A
reader that stops early (``| head -1``) ends the output quietly, status 0.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from agent.escpos import EscposProfile, ReceiptReader
from agent.escpos.receipt import Record
from agent.profiles import default_profiles_dir, load_profile
from wire.configfile import ConfigError

CHUNK = 65536


def print_receipts(
    path: Path, profile: str, profiles_dir: Path | None = None, show_text: bool = False
) -> int:
    try:
        driver, loaded = load_profile(profiles_dir or default_profiles_dir(), profile)
    except ConfigError as exc:
        exc.report()
        return 2
    if not isinstance(loaded, EscposProfile):
        print(
            f"error: profile {profile!r} is for the {driver.name} driver, not escpos",
            file=sys.stderr,
        )
        return 2
    reader = ReceiptReader(loaded, raw=False, exact=True)
    encoder = msgspec.json.Encoder(decimal_format="number")
    out = sys.stdout.buffer
    count = errors = 0

    def emit(records: list[Record]) -> None:
        nonlocal count, errors
        for data, error in records:
            count += 1
            errors += error is not None
            if not show_text:
                data.pop("text", None)
            out.write(encoder.encode({**data, "error": error}) + b"\n")
            out.flush()

    name = "standard input" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            _read(sys.stdin.buffer, reader, emit)
        else:
            with open(path, "rb") as stream:
                _read(stream, reader, emit)
        emit(reader.end())
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as exc:
        print(f"error: {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{name}: {count} receipts, {errors} with errors", file=sys.stderr)
    return 0


def _quiet_stdout() -> None:
    """The reader of our output has gone (``| head -1``): point standard output
    at /dev/null so the interpreter's last flush doesn't fail on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _read(stream: BinaryIO, reader: ReceiptReader, emit: Callable[[list[Record]], None]) -> None:
    while chunk := stream.read(CHUNK):
        emit(reader.feed(chunk))
