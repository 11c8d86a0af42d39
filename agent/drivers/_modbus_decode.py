"""Modbus register words ↔ numbers and text, in the byte/word orders field devices use.

A 32-bit value ``0xAABBCCDD`` travels in two 16-bit registers. ``word_order`` says
which register holds the high word, ``byte_order`` which byte of each register is
sent first:

=========  ==========  ==========  ========================
 order      word_order  byte_order  registers for 0xAABBCCDD
=========  ==========  ==========  ========================
 ABCD       big         big         0xAABB 0xCCDD
 CDAB       little      big         0xCCDD 0xAABB
 BADC       big         little      0xBBAA 0xDDCC
 DCBA       little      little      0xDDCC 0xBBAA
=========  ==========  ==========  ========================

For 64-bit values ``little`` word order reverses all four registers (GHEFCDAB).
Any other arrangement is written as the letters of the bytes as they arrive, ``A``
the most significant: ``order: EFGHABCD`` (the two 32-bit halves swapped), ``BA``.

Types: ``int8``/``uint8`` (one byte of a register), ``int16``/``uint16``, ``int32``/
``uint32``, ``int64``/``uint64``, ``float16`` (IEEE half), ``float32``, ``float64``
and ``string`` (bytes of N registers, first register first). Values are not rounded:
what float64 holds is what is reported (float32 values are given as the shortest
decimal that is the same float32: 2.345, not 2.3450000286102295).

Pure functions, no I/O: the driver and the tests share them.
"""

import math
import struct
from collections.abc import Sequence
from typing import Literal

RegisterType = Literal[
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "float16",
    "float32",
    "int64",
    "uint64",
    "float64",
    "string",
]
Order = Literal["big", "little"]

# type → (registers, struct format of the big-endian bytes)
FORMATS: dict[str, tuple[int, str]] = {
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "float16": (1, ">e"),
    "float32": (2, ">f"),
    "int64": (4, ">q"),
    "uint64": (4, ">Q"),
    "float64": (4, ">d"),
}
BYTE_TYPES = {"int8": "b", "uint8": "B"}  # one byte of one register
INTEGER_BITS = {
    "int8": 8,
    "uint8": 8,
    "int16": 16,
    "uint16": 16,
    "int32": 32,
    "uint32": 32,
    "int64": 64,
    "uint64": 64,
}
LETTERS = "ABCDEFGH"

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class DecodeError(ValueError):
    """Registers that can't be a value of the type (wrong count, out of range)."""


def register_count(type_: str, count: int | None = None) -> int:
    """How many 16-bit registers a value of ``type_`` takes (a string: ``count``)."""
    if type_ == "string":
        return count or 1
    return FORMATS[type_][0] if type_ in FORMATS else 1


def is_float(type_: str) -> bool:
    return type_.startswith("float")


def order_name(word_order: Order, byte_order: Order) -> str:
    """ABCD, CDAB, BADC or DCBA."""
    return {
        ("big", "big"): "ABCD",
        ("little", "big"): "CDAB",
        ("big", "little"): "BADC",
        ("little", "little"): "DCBA",
    }[(word_order, byte_order)]


def check_order(letters: str, registers: int) -> None:
    """``letters`` must arrange the 2 x ``registers`` bytes of a value: ValueError if not."""
    want = LETTERS[: 2 * registers]
    if len(letters) != len(want) or sorted(letters) != list(want):
        raise ValueError(
            f"order {letters!r} must arrange the letters {want} (one per byte of the "
            f"{registers}-register value, A the most significant), e.g. "
            f"{want[2:4] + want[0:2] + want[4:]}"
        )


def _words(registers: Sequence[int]) -> bytes:
    out = bytearray()
    for word in registers:
        if not isinstance(word, int) or not 0 <= word <= 0xFFFF:
            raise DecodeError(f"register value {word!r} is not 16-bit")
        out += word.to_bytes(2, "big")
    return bytes(out)


def value_bytes(
    registers: Sequence[int],
    word_order: Order = "big",
    byte_order: Order = "big",
    order: str | None = None,
) -> bytes:
    """The value's bytes, most significant first, from the registers as read."""
    wire = _words(registers)
    if order is not None:
        if len(order) != len(wire):
            raise DecodeError(
                f"order {order} needs {len(order) // 2} registers, got {len(registers)}"
            )
        out = bytearray(len(wire))
        for position, letter in enumerate(order):
            out[LETTERS.index(letter)] = wire[position]
        return bytes(out)
    words = [wire[i : i + 2] for i in range(0, len(wire), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    if word_order == "little":
        words.reverse()
    return b"".join(words)


def decode(
    registers: Sequence[int],
    type_: str,
    word_order: Order = "big",
    byte_order: Order = "big",
    *,
    order: str | None = None,
    byte: Literal["high", "low"] | None = None,
) -> int | float:
    """The number in ``registers`` (as read, first register first)."""
    if type_ in BYTE_TYPES:
        if len(registers) != 1:
            raise DecodeError(f"{type_} needs 1 register, got {len(registers)}")
        both = value_bytes(registers, word_order, byte_order, order)  # most significant first
        half = both[0:1] if byte == "high" else both[1:2]
        number: int = struct.unpack(BYTE_TYPES[type_], half)[0]
        return number
    count, fmt = FORMATS[type_]
    if len(registers) != count:
        raise DecodeError(f"{type_} needs {count} registers, got {len(registers)}")
    value: int | float = struct.unpack(fmt, value_bytes(registers, word_order, byte_order, order))[
        0
    ]
    if type_ == "float32":
        return shortest_float32(float(value))
    return value


def decode_string(
    registers: Sequence[int],
    word_order: Order = "big",
    byte_order: Order = "big",
    *,
    order: str | None = None,
    encoding: str = "ascii",
    trim: bool = True,
) -> str:
    """Text in ``registers``: two bytes per register, first register first (``byte_order``
    little swaps the bytes of every register, ``word_order`` little reverses the
    registers). ``trim`` drops NULs and blanks at both ends; bytes the encoding can't
    read become U+FFFD."""
    if order is not None:
        raw = value_bytes(registers, order=order)
    else:
        raw = _words(registers)
        words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        if byte_order == "little":
            words = [w[::-1] for w in words]
        if word_order == "little":
            words.reverse()
        raw = b"".join(words)
    text = raw.decode(encoding, errors="replace")
    return text.strip("\x00 \t\r\n") if trim else text


def shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 2.345, not 2.3450000286102295."""
    if not math.isfinite(value):
        return value
    packed = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            return candidate
    return value


def encode(
    value: float, type_: str, word_order: Order = "big", byte_order: Order = "big"
) -> list[int]:
    """The registers a device using this order sends for ``value`` (for simulators and tests)."""
    fmt = FORMATS[type_][1]
    try:
        raw = struct.pack(fmt, value if is_float(type_) else int(value))
    except (struct.error, OverflowError) as exc:
        raise DecodeError(f"{value!r} does not fit {type_}: {exc}") from None
    words = [int.from_bytes(raw[i : i + 2], byteorder=byte_order) for i in range(0, len(raw), 2)]
    # words now hold the bytes in the device's byte order; place the high word per word_order
    return words if word_order == "big" else list(reversed(words))


def scaled(raw: int | float, scale: float, offset: float) -> int | float:
    """``raw * scale + offset`` in float64, not rounded; integers stay integers when
    nothing changes them."""
    if scale == 1 and offset == 0:
        return raw
    return raw * scale + offset


def exception_text(code: int) -> str:
    name = EXCEPTION_NAMES.get(code, "unknown exception")
    return f"Modbus exception {code} ({name})"
