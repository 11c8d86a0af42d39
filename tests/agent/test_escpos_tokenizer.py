"""The ESC/POS tokenizer: exact parameter lengths, binary payloads, unknown
sequences, and the same result whatever pieces the bytes arrive in."""

import random

import pytest

from agent.escpos.tokenizer import Token, Tokenizer, tokenize
from tests.agent import escpos_samples as samples
from tests.agent.escpos_samples import TRAP

ESC, GS, FS, DLE = b"\x1b", b"\x1d", b"\x1c", b"\x10"


def merged(tokens: list[Token]) -> list[Token]:
    """Adjacent text runs and adjacent data runs joined (chunking splits them)."""
    out: list[Token] = []
    for t in tokens:
        if out and t.kind in ("text", "data") and out[-1].kind == t.kind and not t.name:
            out[-1] = Token(t.kind, out[-1].raw + t.raw)
        else:
            out.append(t)
    return out


def commands(tokens: list[Token]) -> list[str]:
    return [t.name for t in tokens if t.kind == "command"]


def text_of(tokens: list[Token]) -> bytes:
    return b"".join(t.raw for t in tokens if t.kind == "text")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "little")


# (sequence, name, args, payload bytes that must come out as data, not text)
FAMILIES = [
    (ESC + b"@", "ESC @", b"", b""),
    (ESC + b"t\x13", "ESC t", b"\x13", b""),
    (ESC + b"E\x01", "ESC E", b"\x01", b""),
    (ESC + b"-\x02", "ESC -", b"\x02", b""),
    (ESC + b"!\x38", "ESC !", b"\x38", b""),
    (GS + b"!\x11", "GS !", b"\x11", b""),
    (ESC + b"a\x01", "ESC a", b"\x01", b""),
    (ESC + b"M\x01", "ESC M", b"\x01", b""),
    (ESC + b"R\x0f", "ESC R", b"\x0f", b""),
    (ESC + b"3\x40", "ESC 3", b"\x40", b""),
    (ESC + b"d\x04", "ESC d", b"\x04", b""),
    (ESC + b"$" + u16(100), "ESC $", u16(100), b""),
    (ESC + b"c5\x00", "ESC c", b"5\x00", b""),
    (ESC + b"p\x00\x19\xfa", "ESC p", b"\x00\x19\xfa", b""),
    (DLE + b"\x04\x01", "DLE EOT", b"\x01", b""),
    (DLE + b"\x05\x02", "DLE ENQ", b"\x02", b""),
    (DLE + b"\x14\x01\x00\x05", "DLE DC4", b"\x01\x00\x05", b""),
    (
        DLE + b"\x14\x08\x01\x03\x14\x01\x06\x02\x08",
        "DLE DC4",
        b"\x08\x01\x03\x14\x01\x06\x02\x08",
        b"",
    ),
    (GS + b"r\x01", "GS r", b"\x01", b""),
    (GS + b"H\x02", "GS H", b"\x02", b""),
    (GS + b"h\x50", "GS h", b"\x50", b""),
    (GS + b"w\x03", "GS w", b"\x03", b""),
    (GS + b"L" + u16(8), "GS L", u16(8), b""),
    (GS + b"v0\x00" + u16(4) + u16(3), "GS v 0", b"\x00" + u16(4) + u16(3), TRAP[:12]),
    (GS + b"(k" + u16(len(TRAP) + 3), "GS ( k", u16(len(TRAP) + 3), b"1P0" + TRAP),
    (GS + b"(L" + u16(len(TRAP) + 2), "GS ( L", u16(len(TRAP) + 2), b"0p" + TRAP),
    (
        GS + b"8L" + (len(TRAP)).to_bytes(4, "little"),
        "GS 8 L",
        len(TRAP).to_bytes(4, "little"),
        TRAP,
    ),
    (GS + b"k\x04", "GS k", b"\x04", b"TOTAL 12.345\x00"),
    (GS + b"k\x49" + bytes([len(TRAP)]), "GS k", b"\x49" + bytes([len(TRAP)]), TRAP),
    (GS + b"k\x41\x0c", "GS k", b"\x41\x0c", b"0123456789\n\x1d"),
    (ESC + b"*\x00" + u16(len(TRAP)), "ESC *", b"\x00" + u16(len(TRAP)), TRAP),
    (ESC + b"*\x21" + u16(3), "ESC *", b"\x21" + u16(3), TRAP[:9]),
    (GS + b"*\x01\x02", "GS *", b"\x01\x02", (TRAP * 2)[:16]),
    (FS + b"p\x01\x00", "FS p", b"\x01\x00", b""),
    (ESC + b"(A" + u16(4), "ESC ( A", u16(4), b"\x30\x41\x0a\x1d"),
    (ESC + b"D\x08\x10\x18\x00", "ESC D", b"", b""),
    (ESC + b"Z\x00\x4c\x06" + u16(len(TRAP)), "ESC Z", b"\x00\x4c\x06" + u16(len(TRAP)), TRAP),
    (GS + b"Z\x02", "GS Z", b"\x02", b""),
    (b"\x12#\x0f", "DC2 #", b"\x0f", b""),
    (b"\x12T", "DC2 T", b"", b""),
    (b"\x12*\x02\x03", "DC2 *", b"\x02\x03", TRAP[:6]),
    (GS + b"V\x00", "GS V", b"\x00", b""),
    (GS + b"V\x01", "GS V", b"\x01", b""),
    (GS + b"V0", "GS V", b"0", b""),
    (GS + b"V1", "GS V", b"1", b""),
    (GS + b"VA\x41", "GS V", b"AA", b""),
    (GS + b"VB\x0a", "GS V", b"B\x0a", b""),
    (ESC + b"i", "ESC i", b"", b""),
    (ESC + b"m", "ESC m", b"", b""),
]


@pytest.mark.parametrize(("seq", "name", "args", "payload"), FAMILIES, ids=[f[1] for f in FAMILIES])
def test_each_command_family_takes_exactly_its_parameters(seq, name, args, payload):
    data = b"AB\n" + seq + payload + b"after\n"
    tokens = merged(tokenize(data))
    index = next(i for i, t in enumerate(tokens) if t.kind == "command")
    command = tokens[index]
    assert (command.name, command.args) == (name, args)
    assert command.raw == seq if name != "ESC D" else command.raw + tokens[index + 1].raw == seq
    if payload:
        assert tokens[index + 1] == Token("data", payload)
    assert text_of(tokens) == b"ABafter"
    assert b"".join(t.raw for t in tokens) == data


CUTS = [
    GS + b"V\x00",
    GS + b"V\x01",
    GS + b"V0",
    GS + b"V1",
    GS + b"VA\x05",
    GS + b"VB\x00",
    ESC + b"i",
    ESC + b"m",
]


@pytest.mark.parametrize("cut", CUTS, ids=[c.hex() for c in CUTS])
def test_every_cut_form_is_a_cut(cut):
    tokens = tokenize(b"x\n" + cut + b"y")
    assert [t.is_cut for t in tokens if t.kind == "command"] == [True]
    assert text_of(tokens) == b"xy"


def test_feed_byte_of_a_cut_that_looks_like_text_is_not_text():
    tokens = tokenize(GS + b"VA" + b"T" + b"OTAL")
    assert commands(tokens) == ["GS V"]
    assert text_of(tokens) == b"OTAL"


def test_binary_payloads_that_look_like_text_and_cuts_stay_binary():
    data = samples.Receipt().raster(16, 40).qr(TRAP).barcode_len(TRAP[:40]).graphics_big().bytes()
    assert data.count(b"TOTAL") >= 4 and data.count(GS + b"V") >= 4
    tokens = tokenize(data)
    assert text_of(tokens) == b""
    assert not any(t.is_cut for t in tokens)
    assert commands(tokens).count("GS ( k") == 5


def test_nul_terminated_barcode_is_cut_off_after_255_bytes():
    tokens = merged(tokenize(GS + b"k\x04" + b"9" * 300 + b"\n"))
    assert tokens[1] == Token("data", b"9" * 255)
    assert text_of(tokens) == b"9" * 45


def test_user_defined_characters_and_nv_images_are_skipped_whole():
    chars = ESC + b"&\x03\x41\x42" + b"\x02" + TRAP[:6] + b"\x01" + TRAP[6:9]
    nv = FS + b"q\x01" + u16(1) + u16(1) + TRAP[:8]
    tokens = tokenize(chars + nv + b"ok")
    assert commands(tokens) == ["ESC &", "FS q"]
    assert text_of(tokens) == b"ok"


@pytest.mark.parametrize(
    ("data", "names", "text"),
    [
        (ESC + b"\x7fHello\n", ["ESC ?"], b"Hello"),  # unknown ESC x: ESC and x only
        (ESC + b"\nHello", ["ESC ?"], b"Hello"),  # ESC before a control: ESC alone
        (ESC + ESC + b"@Hi", ["ESC ?", "ESC @"], b"Hi"),
        (GS + b"8XHello", ["GS ?"], b"XHello"),  # GS 8 not followed by L
        (GS + b"v1Hi", ["GS ?"], b"1Hi"),  # GS v not followed by 0
        (GS + b"k\x20Hi", ["GS ?"], b" Hi"),  # barcode type out of range
        (GS + b"\x01Hi", ["GS ?", "0x01"], b"Hi"),
        (FS + b"zHi", ["FS ?"], b"Hi"),
        (DLE + b"Hi", ["DLE"], b"Hi"),
        (b"\x12Hi", ["DC2"], b"Hi"),
        (b"\x00\x07Hi", ["0x00", "0x07"], b"Hi"),
    ],
)
def test_unknown_sequences_are_skipped_without_swallowing_text(data, names, text):
    tokens = tokenize(data)
    assert commands(tokens) == names
    assert text_of(tokens) == text
    assert b"".join(t.raw for t in tokens) == data


def test_incomplete_command_at_end_of_stream_is_flushed_as_data():
    tokenizer = Tokenizer()
    tokens = tokenizer.feed(b"ok" + GS + b"v0\x00\x10")
    assert tokenizer.in_command
    tail = tokenizer.flush()
    assert tail == [Token("data", GS + b"v0\x00\x10", name="incomplete")]
    assert not tokenizer.in_command
    assert text_of(tokens) == b"ok"


def test_huge_declared_payload_is_streamed_not_buffered():
    tokenizer = Tokenizer()
    header = GS + b"8L" + (1 << 30).to_bytes(4, "little")
    tokens = tokenizer.feed(header)
    for _ in range(16):
        tokens = tokenizer.feed(b"TOTAL 1.000\n" * 5000)
        assert [t.kind for t in tokens] == ["data"]
    assert tokenizer.in_command and not tokenizer._pending


def stream_sample() -> bytes:
    return samples.GOLDEN["mixed"]()


def test_every_byte_reaches_exactly_one_token():
    data = stream_sample()
    assert b"".join(t.raw for t in tokenize(data)) == data


def test_random_garbage_never_raises_and_loses_no_byte():
    rng = random.Random(4)
    for _ in range(20):
        data = rng.randbytes(rng.randint(1, 4000))
        tokenizer = Tokenizer()
        tokens = []
        pos = 0
        while pos < len(data):
            size = rng.randint(1, 50)
            tokens += tokenizer.feed(data[pos : pos + size])
            pos += size
        tokens += tokenizer.flush()
        assert b"".join(t.raw for t in tokens) == data


def feed_in(data: bytes, cuts: list[int]) -> list[Token]:
    tokenizer = Tokenizer()
    tokens: list[Token] = []
    start = 0
    for end in [*cuts, len(data)]:
        tokens += tokenizer.feed(data[start:end])
        start = end
    return merged(tokens + tokenizer.flush())


def test_split_at_every_offset_gives_the_same_tokens():
    data = samples.restaurant() + samples.crlf_receipt()
    whole = merged(tokenize(data))
    for offset in range(1, len(data)):
        assert feed_in(data, [offset]) == whole, f"split at byte {offset}"


def test_byte_by_byte_and_random_chunks_give_the_same_tokens():
    data = stream_sample()
    whole = merged(tokenize(data))
    assert feed_in(data, list(range(1, len(data)))) == whole
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 60)))
        assert feed_in(data, cuts) == whole


def test_a_definition_too_big_to_be_real_is_abandoned_not_buffered(monkeypatch):
    from agent.escpos import tokenizer as module

    monkeypatch.setattr(module, "MAX_PENDING", 4096)
    tokenizer = Tokenizer()
    # FS q with one image declared 65535 x 65535 x 8 bytes
    tokens = tokenizer.feed(b"\x1cq\x01\xff\xff\xff\xff")
    tokens += tokenizer.feed(b"\x01" * 4089 + b"after")
    assert not tokenizer._pending
    assert [t.kind for t in tokens] == ["data", "text"]
    assert tokens[0].name == "oversized" and len(tokens[0].raw) == 4096
    assert text_of(tokens) == b"after"
