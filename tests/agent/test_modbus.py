"""The modbus driver's pure parts (decoding, read planning, profile and connection
validation) and its behaviour with real peers beyond the golden cases."""

import asyncio
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from agent.clock import SystemClock
from agent.config import DeviceSection
from agent.devices import build_device
from agent.drivers._modbus_decode import (
    DecodeError,
    decode,
    decode_string,
    encode,
    exception_text,
    order_name,
    scaled,
)
from agent.drivers._modbus_plan import MAX_BITS, MAX_REGISTERS, PointSpan, overlaps, plan_reads
from agent.drivers.modbus import ModbusConnection, ModbusProfile
from agent.poller import Poller
from agent.profiles import parse_profile
from scripts.services import free_port
from wire.configfile import ConfigError
from wire.structs import ValidationError, convert, error_location

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
ORDERS = [("big", "big"), ("little", "big"), ("big", "little"), ("little", "little")]


# decoding


@pytest.mark.parametrize(
    ("word_order", "byte_order", "registers"),
    [
        ("big", "big", [0xAABB, 0xCCDD]),
        ("little", "big", [0xCCDD, 0xAABB]),
        ("big", "little", [0xBBAA, 0xDDCC]),
        ("little", "little", [0xDDCC, 0xBBAA]),
    ],
)
def test_the_four_orders_of_a_32_bit_value(
    word_order: Any, byte_order: Any, registers: list[int]
) -> None:
    assert decode(registers, "uint32", word_order, byte_order) == 0xAABBCCDD
    assert encode(0xAABBCCDD, "uint32", word_order, byte_order) == registers


def test_order_names() -> None:
    assert [order_name(w, b) for w, b in ORDERS] == ["ABCD", "CDAB", "BADC", "DCBA"]


def test_float32_known_registers() -> None:
    assert decode([0x42F6, 0xE979], "float32") == pytest.approx(123.456, rel=1e-7)
    assert decode([0xE979, 0x42F6], "float32", "little", "big") == pytest.approx(123.456, rel=1e-7)


def test_float32_gives_the_shortest_decimal() -> None:
    assert decode([0x4016, 0x147B], "float32") == 2.345
    assert decode([0x3DCC, 0xCCCD], "float32") == 0.1
    assert math.isnan(decode([0x7FC0, 0x0000], "float32"))


def test_64_bit_little_word_order_reverses_all_four_words() -> None:
    assert decode([0x4444, 0x3333, 0x2222, 0x1111], "uint64", "little") == 0x1111222233334444


@pytest.mark.parametrize("type_", TYPES)
@pytest.mark.parametrize(("word_order", "byte_order"), ORDERS)
def test_encode_decode_round_trip(type_: str, word_order: Any, byte_order: Any) -> None:
    value = {
        "int16": -2,
        "uint16": 65000,
        "int32": -70000,
        "uint32": 3_000_000_000,
        "float32": -0.15625,
        "int64": -(2**40),
        "uint64": 2**63 + 5,
        "float64": math.pi,
    }[type_]
    registers = encode(value, type_, word_order, byte_order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(registers, type_, word_order, byte_order) == value


def test_signed_types_are_signed() -> None:
    assert decode([0xFFFF], "int16") == -1
    assert decode([0xFFFF], "uint16") == 65535
    assert decode([0xFF9C], "int16") == -100


def test_decode_refuses_wrong_register_counts_and_values() -> None:
    with pytest.raises(DecodeError, match="needs 2 registers"):
        decode([1], "float32")
    with pytest.raises(DecodeError, match="not 16-bit"):
        decode([70000], "uint16")


def test_scale_is_not_rounded_beyond_float64() -> None:
    assert scaled(3, 1e-13, 0.0) == 3 * 1e-13 != 0  # 12-decimal rounding made this 0.0
    assert scaled(1, 0.1, 0.2) == 0.1 + 0.2  # 0.30000000000000004, as float64 has it


def test_every_order_of_a_64_bit_value_by_letters() -> None:
    regs = [0x0102, 0x0304, 0x0506, 0x0708]
    assert decode(regs, "uint64", order="ABCDEFGH") == 0x0102030405060708
    assert decode(regs, "uint64", order="GHEFCDAB") == 0x0708050603040102
    assert decode(regs, "uint64", order="EFGHABCD") == 0x0506070801020304
    assert decode(regs, "uint64", order="HGFEDCBA") == 0x0807060504030201


def test_bytes_halves_float16_and_strings() -> None:
    assert decode([0x180D], "uint8", byte="low") == 13
    assert decode([0x180D], "uint8", byte="high") == 24
    assert decode([0xFF80], "int8", byte="high") == -1
    assert decode([0xFF80], "int8", byte="low") == -128
    assert decode([0xB814], "float16") == -0.509765625
    modbus = [0x4D6F, 0x6462, 0x7573, 0x2053, 0x7472, 0x696E, 0x6700]
    assert decode_string(modbus) == "Modbus String"
    swapped = [0x6F4D, 0x6264, 0x7375, 0x5320, 0x7274, 0x6E69, 0x0067]
    assert decode_string(swapped, byte_order="little") == "Modbus String"
    assert decode_string([0x4142, 0x2000], trim=False) == "AB \x00"


def test_scale_and_offset() -> None:
    assert scaled(1234, 0.1, 0.0) == pytest.approx(123.4)
    assert scaled(2500, 0.1, -50) == pytest.approx(200.0)
    assert scaled(7, 1, 0) == 7 and isinstance(scaled(7, 1, 0), int)


def test_exception_text_names_the_exception() -> None:
    assert exception_text(2) == "Modbus exception 2 (illegal data address)"
    assert "unknown" in exception_text(99)


# planning


def spans(*items: tuple[str, int, int]) -> list[PointSpan]:
    return [PointSpan(i, f, a, s) for i, (f, a, s) in enumerate(items)]  # type: ignore[arg-type]


def test_adjacent_points_share_a_request() -> None:
    plan = plan_reads(spans(("holding", 0, 2), ("holding", 2, 2), ("holding", 4, 1)))
    assert [(r.function, r.address, r.count) for r in plan] == [("holding", 0, 5)]
    assert [p.index for p in plan[0].points] == [0, 1, 2]


def test_gaps_split_requests_unless_allowed() -> None:
    points = spans(("holding", 0, 1), ("holding", 3, 1))
    assert [(r.address, r.count) for r in plan_reads(points)] == [(0, 1), (3, 1)]
    assert [(r.address, r.count) for r in plan_reads(points, max_gap=2)] == [(0, 4)]


def test_functions_never_share_a_request() -> None:
    plan = plan_reads(spans(("input", 1, 1), ("holding", 0, 1), ("coil", 0, 1), ("discrete", 1, 1)))
    assert [(r.function, r.address) for r in plan] == [
        ("holding", 0),
        ("input", 1),
        ("coil", 0),
        ("discrete", 1),
    ]


def test_more_than_125_registers_split() -> None:
    plan = plan_reads(spans(*[("holding", i * 2, 2) for i in range(100)]))  # 200 registers
    assert [(r.address, r.count) for r in plan] == [(0, 124), (124, 76)]
    assert all(r.count <= MAX_REGISTERS for r in plan)
    assert sum(len(r.points) for r in plan) == 100  # a float is never split across requests


def test_more_than_2000_bits_split() -> None:
    plan = plan_reads(spans(*[("coil", i, 1) for i in range(4100)]))
    assert [(r.address, r.count) for r in plan] == [(0, MAX_BITS), (2000, 2000), (4000, 100)]


def test_device_limit_lowers_the_register_count_only() -> None:
    points = spans(*[("input", i, 1) for i in range(40)], *[("coil", i, 1) for i in range(40)])
    plan = plan_reads(points, max_count=16)
    assert [(r.function, r.count) for r in plan] == [
        ("input", 16),
        ("input", 16),
        ("input", 8),
        ("coil", 40),
    ]


def test_overlaps_found_even_behind_a_long_point() -> None:
    found = overlaps(
        spans(("holding", 0, 4), ("holding", 1, 1), ("holding", 3, 1), ("input", 0, 1))
    )
    assert [(a.index, b.index) for a, b in found] == [(0, 1), (0, 2)]


# profile validation


def problems_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad-sensor.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        parse_profile(path)
    message = "\n".join(info.value.problems)
    assert str(path) in message
    return message


def test_float_on_a_coil_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path,
        "driver: modbus\npoints:\n  - {metric: x, register: 0, function: coil, type: float32}\n",
    )
    assert "points[0]: type: a coil is one bit: type must be bool, not float32" in message


def test_bool_on_a_register_is_refused(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path, "driver: modbus\npoints:\n  - {metric: x, register: 0, type: bool}\n"
    )
    assert "points[0]: type: bool is for coil or discrete; for one bit" in message


def test_overlapping_points_are_read_once(tmp_path: Path) -> None:
    """Several points on one register and overlapping spans share the read."""
    path = tmp_path / "overlap.yaml"
    path.write_text(
        "driver: modbus\npoints:\n"
        "  - {metric: level, register: 0, type: float32}\n"
        "  - {metric: low_word, register: 1, type: uint16}\n"
        "  - {metric: status_raw, register: 2}\n"
        "  - {metric: alarm, register: 2, bit: 15}\n"
        "  - {metric: mode, register: 2, mask: 0x0F00, shift: 8}\n"
        "  - {metric: level_hi, register: 2, type: uint8, byte: high}\n"
    )
    _driver, profile = parse_profile(path)
    requests = plan_reads([p.span(i) for i, p in enumerate(profile.points)])
    assert [r.describe() for r in requests] == ["holding registers 0-2"]


@pytest.mark.parametrize(
    ("point", "words"),
    [
        ("{metric: x, register: 0, type: uint8}", "byte: uint8 needs byte: high or byte: low"),
        ("{metric: x, register: 0, byte: high}", "byte: only for int8/uint8, not uint16"),
        ("{metric: x, register: 0, type: string}", "count: a string needs count"),
        ("{metric: x, register: 0, count: 4}", "count: only for type string"),
        ("{metric: x, register: 0, bit: 16}", "bit: uint16 has bits 0..15, not 16"),
        ("{metric: x, register: 0, bit: 1, mask: 3}", "give either bit or mask/shift"),
        ("{metric: x, register: 0, mask: 0x10000}", "mask: 0x10000 is wider than uint16"),
        ("{metric: x, register: 0, type: float32, bit: 1}", "bit: only on an integer"),
        ("{metric: x, register: 0, bit: 1, scale: 2}", "scale and offset don't apply to a bit"),
        ("{metric: x, register: 0, type: int32, order: ABC}", "must arrange the letters ABCD"),
        ("{metric: x, register: 0, type: int32, order: ABCA}", "must arrange the letters ABCD"),
        (
            "{metric: x, register: 0, type: int32, order: CDAB, word_order: little}",
            "give either order or word_order/byte_order",
        ),
        ("{metric: x, register: 0, type: string, count: 2, scale: 2}", "don't apply to a string"),
    ],
)
def test_register_map_keys_are_checked(tmp_path: Path, point: str, words: str) -> None:
    message = problems_of(tmp_path, f"driver: modbus\npoints:\n  - {point}\n")
    assert words in message


def test_register_past_the_address_space_is_refused(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path, "driver: modbus\npoints:\n  - {metric: x, register: 65534, type: float64}\n"
    )
    assert "points[0]: type: float64 at register 65534 needs 4 registers" in message
    assert "past address 65535" in message
    message = problems_of(tmp_path, "driver: modbus\npoints:\n  - {metric: x, register: -1}\n")
    assert "points[0].register: Expected `int` >= 0" in message


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ("{metric: x, register: 0, function: output}", "points[0].function"),
        ("{metric: x, register: 0, type: float128}", "points[0].type"),
        ("{metric: x, register: 0, word_order: middle}", "points[0].word_order"),
        ("{metric: x, register: 0, scael: 2}", "points[0].scael"),
        ("{metric: x, register: 0, invalid: 5}", "points[0].invalid"),
        ("{register: 0}", "points[0].metric"),
        ("{metric: x, register: 0, function: coil, scale: 2}", "points[0]"),
        ("{metric: x, register: 0, type: float32, counter: {total_metric: t}}", "points[0]"),
        ("{metric: x, register: 0, counter: {per_count: 0.2}}", "points[0].counter.total_metric"),
    ],
)
def test_bad_point_keys_are_named(tmp_path: Path, point: str, field: str) -> None:
    message = problems_of(tmp_path, f"driver: modbus\npoints:\n  - {point}\n")
    assert f": {field}" in message


def test_duplicate_metrics_including_counter_metrics_are_refused(tmp_path: Path) -> None:
    message = problems_of(
        tmp_path,
        "driver: modbus\npoints:\n"
        "  - {metric: tips, register: 0, counter: {total_metric: rain}}\n"
        "  - {metric: rain, register: 1}\n",
    )
    assert "metric 'rain' already used by points[0]" in message


def test_defaults_fill_the_type() -> None:
    profile = convert(
        {
            "driver": "modbus",
            "points": [
                {"metric": "a", "register": 0},
                {"metric": "b", "register": 0, "function": "coil"},
            ],
        },
        ModbusProfile,
    )
    assert [p.type for p in profile.points] == ["uint16", "bool"]


# connection validation


def test_tcp_and_rtu_connections() -> None:
    tcp = convert({"transport": "tcp", "host": "10.0.0.5"}, ModbusConnection)
    assert (tcp.port, tcp.unit) == (502, 1)
    rtu = convert(
        {
            "transport": "rtu",
            "port": "/dev/ttyUSB0",
            "baudrate": 19200,
            "parity": "E",
            "stopbits": 1,
            "unit": 3,
        },
        ModbusConnection,
    )
    assert (rtu.port, rtu.baudrate, rtu.parity, rtu.unit) == ("/dev/ttyUSB0", 19200, "E", 3)
    assert (rtu.stopbits, rtu.bytesize) == (1, 8)  # defaults of the keys not given
    tcp = convert({"transport": "tcp", "host": "h", "port": "1502"}, ModbusConnection)
    assert tcp.port == 1502


@pytest.mark.parametrize(
    ("connection", "loc", "words"),
    [
        ({"transport": "tcp"}, (), "transport tcp needs host"),
        ({"transport": "tcp", "host": "h", "port": 70000}, (), "port: a TCP port is between 1"),
        ({"transport": "tcp", "host": "h", "port": "http"}, (), "port: a TCP port is a number"),
        ({"transport": "tcp", "host": "h", "baudrate": 9600}, (), "baudrate: only for transport"),
        ({"transport": "rtu", "port": 502}, (), "port: rtu needs the serial device path"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "host": "h"}, (), "host is for transport"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "parity": "X"}, ("parity",), "'X'"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "unit": 0}, (), "unit: an RTU unit id is"),
        ({"transport": "rtu", "port": "/dev/ttyUSB0", "unit": 300}, ("unit",), "<= 255"),
        ({"transport": "udp", "host": "h"}, ("transport",), "'udp'"),
        ({"transport": "tcp", "host": "h", "slave": 2}, ("slave",), "unknown key"),
    ],
)
def test_bad_connections_are_explained(connection: dict, loc: tuple, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        convert(connection, ModbusConnection)
    where, message = error_location(info.value)
    assert where == loc and words in message


def test_bad_connection_in_agent_yaml_names_the_device(tmp_path: Path) -> None:
    section = DeviceSection(
        id="level-1", profile="river/radar-level-mm", connection={"transport": "tcp"}
    )
    from agent.profiles import default_profiles_dir

    with pytest.raises(ConfigError) as info:
        build_device(section, default_profiles_dir(), "agent.yaml", 0)
    assert str(info.value) == (
        "agent.yaml: devices[0].connection: transport tcp needs host [device level-1]"
    )


# with real peers


def make_device(
    port: int, timeout: float = 0.5, retries: int = 0, profile: str = "river/radar-level-mm"
) -> Any:
    from agent.profiles import default_profiles_dir

    section = DeviceSection(
        id="dut",
        profile=profile,
        interval=1,
        timeout=timeout,
        retries=retries,
        connection={"transport": "tcp", "host": "127.0.0.1", "port": port, "unit": 1},
    )
    return build_device(section, default_profiles_dir(), "test")


def test_nobody_listening_gives_bad_readings_naming_the_address() -> None:
    port = free_port()
    device = make_device(port)

    async def run() -> list:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        samples = await poller.poll(1_700_000_000.0)
        await poller._close()
        return samples

    samples = asyncio.run(run())
    assert [s.quality for s in samples] == ["bad"] * 3
    assert all(f"127.0.0.1:{port}" in (s.error or "") for s in samples)


def test_a_server_that_comes_back_is_read_again(modbus_server: Any) -> None:
    server = modbus_server({1: {"holding": {0: [1000, 2000, 0]}}})
    device = make_device(server.port)

    async def run() -> list[list]:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        first = await poller.poll(1_700_000_000.0)
        server.stop()
        second = await poller.poll(1_700_000_001.0)
        server2 = modbus_server({1: {"holding": {0: [1500, 2000, 0]}}})
        device.driver.connection.port = server2.port  # the device came back (new port in tests)
        third = await poller.poll(1_700_000_002.0)
        await poller._close()
        return [first, second, third]

    first, second, third = asyncio.run(run())
    assert first[0].value == pytest.approx(100.0)
    assert [s.quality for s in second] == ["bad"] * 3
    assert third[0].value == pytest.approx(150.0) and third[0].quality == "good"


def test_retries_reconnect_within_one_poll(silent_tcp: Any) -> None:
    device = make_device(silent_tcp.port, timeout=0.2, retries=2)

    async def run() -> list:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        samples = await poller.poll(1_700_000_000.0)
        await poller._close()
        return samples

    samples = asyncio.run(run())
    assert all(s.quality == "bad" and "timeout after 0.2s" in (s.error or "") for s in samples)


def test_float_nan_and_infinity_are_bad(modbus_server: Any, tmp_path: Path) -> None:
    nan = list(struct.unpack(">HH", struct.pack(">f", float("nan"))))
    inf = list(struct.unpack(">HH", struct.pack(">f", float("inf"))))
    server = modbus_server({1: {"input": {0: [*nan, *inf]}}})
    (tmp_path / "p.yaml").write_text(
        "driver: modbus\npoints:\n"
        "  - {metric: a, register: 0, function: input, type: float32}\n"
        "  - {metric: b, register: 2, function: input, type: float32}\n",
        encoding="utf-8",
    )
    section = DeviceSection(
        id="dut",
        profile="p",
        timeout=0.5,
        connection={"transport": "tcp", "host": "127.0.0.1", "port": server.port},
    )
    device = build_device(section, tmp_path, "test")

    async def run() -> list:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        samples = await poller.poll(1_700_000_000.0)
        await poller._close()
        return samples

    a, b = asyncio.run(run())
    assert (a.quality, a.value, b.quality, b.value) == ("bad", None, "bad", None)
    assert "nan" in (a.error or "") and "inf" in (b.error or "")


def test_counter_value_beyond_its_wrap_is_bad(modbus_server: Any, tmp_path: Path) -> None:
    server = modbus_server({1: {"holding": {0: 9998}}})
    (tmp_path / "p.yaml").write_text(
        "driver: modbus\npoints:\n"
        "  - {metric: tips, register: 0, counter: {wrap: 10000, per_count: 0.5,"
        " total_metric: rain_mm, rate_metric: rain_mm_h}}\n",
        encoding="utf-8",
    )
    section = DeviceSection(
        id="dut",
        profile="p",
        timeout=0.5,
        connection={"transport": "tcp", "host": "127.0.0.1", "port": server.port},
    )
    device = build_device(section, tmp_path, "test")

    async def run() -> list[list]:
        poller = Poller(device.driver, lambda *a: None, SystemClock())
        first = await poller.poll(1_700_000_000.0)
        server.set(1, "holding", 0, 12000)
        second = await poller.poll(1_700_000_060.0)
        server.set(1, "holding", 0, 1)  # wrapped: 9998 → 1 is 3 tips = 1.5 mm in 120 s
        third = await poller.poll(1_700_000_120.0)
        await poller._close()
        return [first, second, third]

    first, second, third = asyncio.run(run())
    assert [(s.metric, s.value) for s in first] == [("tips", 9998), ("rain_mm", 4999.0)]
    assert [(s.metric, s.quality) for s in second] == [
        ("tips", "bad"),
        ("rain_mm", "bad"),
        ("rain_mm_h", "bad"),
    ]
    assert "count 12000 outside 0..9999" in (second[0].error or "")
    assert [(s.metric, s.value) for s in third] == [
        ("tips", 1),
        ("rain_mm", 5000.5),
        ("rain_mm_h", 45.0),
    ]
