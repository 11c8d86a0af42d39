"""Modbus register words ↔ numbers, in the four byte/word orders field devices use.

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

Pure functions, no I/O: the driver and the tests share them.
"""

import math
import struct
from collections.abc import Sequence
from typing import Literal

RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"
]
Order = Literal["big", "little"]

# type → (registers, struct format, big-endian)
FORMATS: dict[str, tuple[int, str]] = {
    "int16": (1, ">h"),
    "uint16": (1, ">H"),
    "int32": (2, ">i"),
    "uint32": (2, ">I"),
    "float32": (2, ">f"),
    "int64": (4, ">q"),
    "uint64": (4, ">Q"),
    "float64": (4, ">d"),
}

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


def register_count(type_: str) -> int:
    """How many 16-bit registers a value of ``type_`` takes (bits take one coil each)."""
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


def _to_bytes(registers: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    words = list(registers) if word_order == "big" else list(reversed(registers))
    out = bytearray()
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise DecodeError(f"register value {word!r} is not 16-bit")
        out += word.to_bytes(2, byteorder=byte_order)
    return bytes(out)


def decode(
    registers: Sequence[int], type_: str, word_order: Order = "big", byte_order: Order = "big"
) -> int | float:
    """The value in ``registers`` (as read, first register first)."""
    count, fmt = FORMATS[type_]
    if len(registers) != count:
        raise DecodeError(f"{type_} needs {count} registers, got {len(registers)}")
    value: int | float = struct.unpack(fmt, _to_bytes(registers, word_order, byte_order))[0]
    if type_ == "float32":
        return shortest_float32(float(value))
    return value


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
    except struct.error as exc:
        raise DecodeError(f"{value!r} does not fit {type_}: {exc}") from None
    words = [int.from_bytes(raw[i : i + 2], byteorder=byte_order) for i in range(0, len(raw), 2)]
    # words now hold the bytes in the device's byte order; place the high word per word_order
    return words if word_order == "big" else list(reversed(words))


def scaled(raw: int | float, scale: float, offset: float) -> int | float:
    """``raw * scale + offset``; integers stay integers when nothing changes them."""
    if scale == 1 and offset == 0:
        return raw
    value = raw * scale + offset
    return round(value, 12) if math.isfinite(value) else value


def exception_text(code: int) -> str:
    name = EXCEPTION_NAMES.get(code, "unknown exception")
    return f"Modbus exception {code} ({name})"
