"""An incremental ESC/POS tokenizer: bytes in, in pieces of any size; tokens out.

Every command's parameter length is known (Epson ESC/POS, plus the older
``ESC Z`` QR form and the ``DC2`` commands of small kiosk printers), so binary
payloads (raster images, QR codes, barcodes, downloaded graphics) are never
read as text, and a byte inside a payload that happens to look like a cut
(``GS V``) is never taken for one. Concatenating the ``raw`` of every token
gives back the input exactly.

Token kinds:

``text``
    printable bytes (``0x20``-``0xFF`` and TAB), not yet decoded: the code page
    is chosen by the reader (``ESC t n`` may switch it).
``newline``
    ``LF``, ``CR`` or ``FF``.
``command``
    a complete command header; ``name`` is its mnemonic (``"GS V"``) and
    ``args`` its fixed parameter bytes. A command with a payload (``GS v 0``
    raster, ``GS ( k``, ``GS k`` with a length, ...) is followed by ``data``
    tokens carrying the payload.
``data``
    binary payload of the preceding command, possibly split over several tokens.

Policy for sequences the table doesn't know: an unknown ``ESC x`` / ``GS x`` /
``FS x`` consumes exactly the introducer and its function byte ``x`` and
nothing after it (name ``"ESC ?"``, ``"GS ?"`` or ``"FS ?"``). If the byte
after the introducer is itself a control byte (below ``0x20``), only the
introducer is dropped and the control byte is read normally. A ``DLE`` or
``DC2`` not followed by one of its known functions is dropped alone. So at
most one byte that belonged to the unknown command is ever lost, and text
that follows is never swallowed; unknown parameters may show up as stray text, which the
receipt parser ignores unless it matches a label.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["text", "newline", "command", "data"]

ESC, GS, FS, DLE, DC2 = 0x1B, 0x1D, 0x1C, 0x10, 0x12
LF, CR, FF, HT = 0x0A, 0x0D, 0x0C, 0x09

CUT_COMMANDS = frozenset({"GS V", "ESC i", "ESC m"})
"""Commands that cut the paper: a receipt ends here."""

MAX_PENDING = 1 << 20
"""A command whose length is known only once complete (``ESC &``, ``FS q``) and
that grows past this is abandoned: its bytes come out as ``data``."""

MAX_NUL_TERMINATED = 255
"""A NUL-terminated parameter (``GS k`` m 0-6, ``ESC D``) longer than this is cut off."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    raw: bytes
    name: str = ""
    args: bytes = b""

    @property
    def is_cut(self) -> bool:
        return self.kind == "command" and self.name in CUT_COMMANDS


# A command layout: given the buffer and the index of the introducer, either
# None (more bytes needed to know), or (header length, payload length, name).
# The payload length may be _UNTIL_NUL for NUL-terminated parameters.
_UNTIL_NUL = -1
Layout = tuple[int, int, str] | None
Rule = Callable[[bytes | bytearray, int], Layout]


# ESC x with a fixed number of parameter bytes after x.
_ESC_FIXED: dict[int, int] = {
    0x0C: 0,  # ESC FF   print page-mode data
    0x20: 1,  # ESC SP n right-side character spacing
    0x21: 1,  # ESC ! n  print mode (bold, double height/width, underline)
    0x24: 2,  # ESC $ nL nH absolute position
    0x25: 1,  # ESC % n  user-defined character set on/off
    0x2D: 1,  # ESC - n  underline
    0x32: 0,  # ESC 2    default line spacing
    0x33: 1,  # ESC 3 n  line spacing
    0x3C: 0,  # ESC <    return home
    0x3D: 1,  # ESC = n  select peripheral device
    0x34: 0,  # ESC 4    italic on (Star-compatible and many ESC/POS clones)
    0x35: 0,  # ESC 5    italic off
    0x3F: 1,  # ESC ? n  cancel user-defined character
    0x40: 0,  # ESC @    initialize
    0x42: 2,  # ESC B n t  beeper (TM-U220, TM-T20 family and clones)
    0x45: 1,  # ESC E n  emphasized (bold)
    0x47: 1,  # ESC G n  double-strike
    0x4A: 1,  # ESC J n  print and feed
    0x4B: 1,  # ESC K n  print and reverse feed
    0x4C: 0,  # ESC L    page mode
    0x4D: 1,  # ESC M n  character font
    0x52: 1,  # ESC R n  international character set
    0x53: 0,  # ESC S    standard mode
    0x54: 1,  # ESC T n  print direction in page mode
    0x55: 1,  # ESC U n  unidirectional printing
    0x56: 1,  # ESC V n  90 degree rotation
    0x57: 8,  # ESC W    print area in page mode
    0x5C: 2,  # ESC \ nL nH relative position
    0x61: 1,  # ESC a n  justification
    0x63: 2,  # ESC c 3 n / ESC c 4 n / ESC c 5 n  paper sensors, panel buttons
    0x64: 1,  # ESC d n  print and feed n lines
    0x65: 1,  # ESC e n  print and reverse feed n lines
    0x66: 2,  # ESC f t n  cut sheet wait time
    0x69: 0,  # ESC i    partial cut (one point left)
    0x6D: 0,  # ESC m    partial cut (three points left)
    0x70: 3,  # ESC p m t1 t2  drawer kick
    0x72: 1,  # ESC r n  print color
    0x74: 1,  # ESC t n  character code table
    0x75: 1,  # ESC u n  transmit peripheral status
    0x76: 0,  # ESC v    transmit paper status
    0x7B: 1,  # ESC { n  upside-down printing
}

# GS x with a fixed number of parameter bytes after x.
_GS_FIXED: dict[int, int] = {
    0x21: 1,  # GS ! n   character size
    0x24: 2,  # GS $ nL nH absolute vertical position in page mode
    0x2F: 1,  # GS / m   print downloaded bit image
    0x3A: 0,  # GS :     start/end macro definition
    0x42: 1,  # GS B n   white/black reverse
    0x45: 1,  # GS E n   print density (old)
    0x48: 1,  # GS H n   HRI position
    0x49: 1,  # GS I n   transmit printer id
    0x4C: 2,  # GS L nL nH left margin
    0x50: 2,  # GS P x y motion units
    0x54: 1,  # GS T n   print position to beginning of line
    0x57: 2,  # GS W nL nH print area width
    0x5A: 1,  # GS Z n   select 2D code type (older form, with ESC Z)
    0x5C: 2,  # GS \ nL nH relative vertical position in page mode
    0x5E: 3,  # GS ^ r t m execute macro
    0x61: 1,  # GS a n   automatic status back
    0x62: 1,  # GS b n   smoothing
    0x63: 0,  # GS c     print counter
    0x66: 1,  # GS f n   HRI font
    0x6A: 1,  # GS j n   automatic status back for ink
    0x68: 1,  # GS h n   barcode height
    0x72: 1,  # GS r n   transmit status
    0x77: 1,  # GS w n   barcode width
    0x7A: 3,  # GS z 0 t1 t2  online recovery wait time
}

# FS x with a fixed number of parameter bytes after x.
_FS_FIXED: dict[int, int] = {
    0x21: 1,  # FS ! n   Kanji print mode
    0x26: 0,  # FS &     Kanji mode on
    0x2D: 1,  # FS - n   Kanji underline
    0x2E: 0,  # FS .     Kanji mode off
    0x43: 1,  # FS C n   Kanji code system
    0x3F: 2,  # FS ? c1 c2 cancel user-defined Kanji character
    0x53: 2,  # FS S n1 n2 Kanji spacing
    0x57: 1,  # FS W n   Kanji quadruple size
    0x70: 2,  # FS p n m print NV bit image
}


def _u16(buf: bytes | bytearray, i: int) -> int:
    return buf[i] | (buf[i + 1] << 8)


def _have(buf: bytes | bytearray, i: int, n: int) -> bool:
    return len(buf) - i >= n


def _esc(buf: bytes | bytearray, i: int) -> Layout:
    fn = buf[i + 1]
    if fn in _ESC_FIXED:
        return 2 + _ESC_FIXED[fn], 0, f"ESC {chr(fn)}"
    if fn == 0x2A:  # ESC * m nL nH d1..dk  bit image
        if not _have(buf, i, 5):
            return None
        m, n = buf[i + 2], _u16(buf, i + 3)
        return 5, n * (1 if m in (0, 1) else 3), "ESC *"
    if fn == 0x28:  # ESC ( fn pL pH d1..dp
        if not _have(buf, i, 5):
            return None
        return 5, _u16(buf, i + 3), f"ESC ( {chr(buf[i + 2])}"
    if fn == 0x44:  # ESC D n1..nk NUL  horizontal tab positions
        return 2, _UNTIL_NUL, "ESC D"
    if fn == 0x26:  # ESC & y c1 c2 [x d1..d(y*x)]...  user-defined characters
        return _esc_user_chars(buf, i)
    if fn == 0x5A:  # ESC Z m n k dL dH d1..dp  QR code (older Epson-compatible form)
        if not _have(buf, i, 7):
            return None
        return 7, _u16(buf, i + 5), "ESC Z"
    return 2, 0, "ESC ?"


def _esc_user_chars(buf: bytes | bytearray, i: int) -> Layout:
    if not _have(buf, i, 5):
        return None
    y, c1, c2 = buf[i + 2], buf[i + 3], buf[i + 4]
    pos = i + 5
    for _ in range(max(0, c2 - c1 + 1)):
        if not _have(buf, pos, 1):
            return None
        pos += 1 + y * buf[pos]
    return pos - i, 0, "ESC &"  # the whole definition is the header


def _gs(buf: bytes | bytearray, i: int) -> Layout:
    fn = buf[i + 1]
    if fn in _GS_FIXED:
        return 2 + _GS_FIXED[fn], 0, f"GS {chr(fn)}"
    if fn == 0x56:  # GS V m [n]  cut
        if not _have(buf, i, 3):
            return None
        m = buf[i + 2]
        return (4 if m in (65, 66, 97, 98, 103, 104) else 3), 0, "GS V"
    if fn == 0x76:  # GS v 0 m xL xH yL yH d1..dk  raster image
        if not _have(buf, i, 3):
            return None
        if buf[i + 2] != 0x30:
            return 2, 0, "GS ?"
        if not _have(buf, i, 8):
            return None
        return 8, _u16(buf, i + 4) * _u16(buf, i + 6), "GS v 0"
    if fn == 0x28:  # GS ( fn pL pH d1..dp  (GS ( k 2D codes, GS ( L graphics, ...)
        if not _have(buf, i, 5):
            return None
        return 5, _u16(buf, i + 3), f"GS ( {chr(buf[i + 2])}"
    if fn == 0x38:  # GS 8 L p1 p2 p3 p4 m fn ...  graphics, 32-bit length
        if not _have(buf, i, 3):
            return None
        if buf[i + 2] != 0x4C:
            return 2, 0, "GS ?"
        if not _have(buf, i, 7):
            return None
        size = buf[i + 3] | buf[i + 4] << 8 | buf[i + 5] << 16 | buf[i + 6] << 24
        return 7, size, "GS 8 L"
    if fn == 0x6B:  # GS k m ...  barcode
        if not _have(buf, i, 3):
            return None
        m = buf[i + 2]
        if m <= 6:
            return 3, _UNTIL_NUL, "GS k"
        if 65 <= m <= 79:
            if not _have(buf, i, 4):
                return None
            return 4, buf[i + 3], "GS k"
        return 2, 0, "GS ?"
    if fn == 0x51:  # GS Q 0 m xL xH yL yH d1..dk  variable vertical size bit image,
        # k = x * int((y + 7) / 8): x dots across, y dots down in columns of 8
        if not _have(buf, i, 3):
            return None
        if buf[i + 2] != 0x30:
            return 2, 0, "GS ?"
        if not _have(buf, i, 8):
            return None
        return 8, _u16(buf, i + 4) * ((_u16(buf, i + 6) + 7) // 8), "GS Q 0"
    if fn == 0x2A:  # GS * x y d1..d(x*y*8)  define downloaded bit image
        if not _have(buf, i, 4):
            return None
        return 4, buf[i + 2] * buf[i + 3] * 8, "GS *"
    if fn == 0x67:  # GS g 0 m nL nH / GS g 2 m nL nH  maintenance counters
        return 6, 0, "GS g"
    if fn == 0x43:  # GS C 0 n m / GS C 1 aL aH bL bH n r / GS C 2 nL nH  counters (old)
        if not _have(buf, i, 3):
            return None
        sub = buf[i + 2]
        if sub in (0x00, 0x30, 0x02, 0x32):
            return 5, 0, "GS C"
        if sub in (0x01, 0x31):
            return 9, 0, "GS C"
        return 2, 0, "GS ?"
    return 2, 0, "GS ?"


def _fs(buf: bytes | bytearray, i: int) -> Layout:
    fn = buf[i + 1]
    if fn in _FS_FIXED:
        return 2 + _FS_FIXED[fn], 0, f"FS {chr(fn)}"
    if fn == 0x28:  # FS ( fn pL pH d1..dp
        if not _have(buf, i, 5):
            return None
        return 5, _u16(buf, i + 3), f"FS ( {chr(buf[i + 2])}"
    if fn == 0x32:  # FS 2 c1 c2 d1..d72  define Kanji character
        return 4, 72, "FS 2"
    if fn == 0x71:  # FS q n [xL xH yL yH d1..dk]1..n  define NV bit images
        return _fs_nv_images(buf, i)
    if fn == 0x67:  # FS g 1 m a1 a2 a3 a4 nL nH d1..dk / FS g 2 m a1..a4 nL nH  NV user memory
        if not _have(buf, i, 3):
            return None
        if buf[i + 2] not in (0x31, 0x32):
            return 2, 0, "FS ?"
        if not _have(buf, i, 10):
            return None
        if buf[i + 2] == 0x31:
            return 10, _u16(buf, i + 8), "FS g 1"
        return 10, 0, "FS g 2"
    return 2, 0, "FS ?"


def _fs_nv_images(buf: bytes | bytearray, i: int) -> Layout:
    if not _have(buf, i, 3):
        return None
    pos = i + 3
    for _ in range(buf[i + 2]):
        if not _have(buf, pos, 4):
            return None
        pos += 4 + _u16(buf, pos) * _u16(buf, pos + 2) * 8
        if len(buf) < pos:
            return None
    return pos - i, 0, "FS q"


def _dle(buf: bytes | bytearray, i: int) -> Layout:
    fn = buf[i + 1]
    if fn in (0x04, 0x05):  # DLE EOT n (status), DLE ENQ n (recover)
        return 3, 0, "DLE EOT" if fn == 0x04 else "DLE ENQ"
    if fn == 0x14:  # DLE DC4 fn ...  real-time requests
        if not _have(buf, i, 3):
            return None
        extra = {1: 2, 2: 2, 3: 5, 7: 1, 8: 7}.get(buf[i + 2], 0)  # 3: a n r t1 t2 buzzer
        return 3 + extra, 0, "DLE DC4"
    # A DLE not followed by a real-time function is an ignored control byte.
    return 1, 0, "DLE"


def _dc2(buf: bytes | bytearray, i: int) -> Layout:
    """DC2 commands of small kiosk/panel printers (parking ticket machines)."""
    fn = buf[i + 1]
    if fn == 0x23:  # DC2 # n  print density
        return 3, 0, "DC2 #"
    if fn == 0x54:  # DC2 T  test page
        return 2, 0, "DC2 T"
    if fn == 0x71:  # DC2 q n  end of job (Seiko Instruments printers)
        return 3, 0, "DC2 q"
    if fn == 0x2A:  # DC2 * r n d1..d(r*n)  bit image
        if not _have(buf, i, 4):
            return None
        return 4, buf[i + 2] * buf[i + 3], "DC2 *"
    return 1, 0, "DC2"


_INTRODUCERS: dict[int, Rule] = {ESC: _esc, GS: _gs, FS: _fs, DLE: _dle, DC2: _dc2}


def _is_text(b: int) -> bool:
    return b >= 0x20 or b == HT


class Tokenizer:
    """Feed bytes in pieces of any size; get the same tokens as if fed at once,
    except that ``text`` and ``data`` runs may be split at different places."""

    def __init__(self) -> None:
        self._pending = bytearray()  # the start of a command not complete yet
        self._skip = 0  # payload bytes still to pass on as ``data``
        self._until_nul = False  # inside a NUL-terminated parameter
        self._nul_seen = 0

    @property
    def in_command(self) -> bool:
        """True while a command or its payload is incomplete."""
        return bool(self._pending) or self._skip > 0 or self._until_nul

    def feed(self, data: bytes) -> list[Token]:
        data = bytes(data)
        out: list[Token] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                out.append(Token("data", data[pos : pos + take]))
                self._skip -= take
                pos += take
            elif self._until_nul:
                pos = self._nul_terminated(data, pos, out)
            elif self._pending:
                pos = self._continue_pending(data, pos, out)
            else:
                b = data[pos]
                if _is_text(b):
                    end = pos + 1
                    while end < n and _is_text(data[end]):
                        end += 1
                    out.append(Token("text", data[pos:end]))
                    pos = end
                elif b in (LF, CR, FF):
                    out.append(Token("newline", data[pos : pos + 1]))
                    pos += 1
                elif b in _INTRODUCERS:
                    pos = self._command_at(data, pos, out)
                else:  # any other control byte (NUL, BEL, CAN, ...) is ignored
                    out.append(Token("command", data[pos : pos + 1], name=f"0x{b:02X}"))
                    pos += 1
        return out

    def flush(self) -> list[Token]:
        """At the end of the stream: an incomplete command comes out as ``data``."""
        out = []
        if self._pending:
            out.append(Token("data", bytes(self._pending), name="incomplete"))
        self._pending.clear()
        self._skip = 0
        self._until_nul = False
        return out

    def _nul_terminated(self, data: bytes, pos: int, out: list[Token]) -> int:
        limit = min(len(data), pos + MAX_NUL_TERMINATED - self._nul_seen)
        end = data.find(0, pos, limit)
        if end >= 0:
            out.append(Token("data", data[pos : end + 1]))
            self._until_nul = False
            return end + 1
        out.append(Token("data", data[pos:limit]))
        self._nul_seen += limit - pos
        if self._nul_seen >= MAX_NUL_TERMINATED:
            self._until_nul = False
        return limit

    def _command_at(self, data: bytes, pos: int, out: list[Token]) -> int:
        """Read a command starting at ``data[pos]``; returns the new position."""
        layout = self._layout(data, pos) if pos + 1 < len(data) else None
        if layout is None or pos + layout[0] > len(data):
            self._pending.append(data[pos])  # not complete: go on byte by byte
            return pos + 1
        header, payload, name = layout
        self._emit(data[pos : pos + header], payload, name, out)
        return pos + header

    def _continue_pending(self, data: bytes, pos: int, out: list[Token]) -> int:
        buf = self._pending
        buf.append(data[pos])
        pos += 1
        layout = self._layout(buf, 0) if len(buf) >= 2 else None
        if layout is None:
            if len(buf) >= MAX_PENDING:  # a definition too big to be real: give up on it
                out.append(Token("data", bytes(buf), name="oversized"))
                buf.clear()
            return pos
        header, payload, name = layout
        if header > len(buf):  # length known now: take what is here at once
            take = min(header - len(buf), len(data) - pos)
            buf += data[pos : pos + take]
            pos += take
            if header > len(buf):
                return pos
        # header < len(buf) only when the last byte is not part of the command
        # (a lone introducer, an unknown function): that byte is read anew.
        unread = len(buf) - header
        raw = bytes(buf[:header])
        buf.clear()
        self._emit(raw, payload, name, out)
        return pos - unread

    def _layout(self, buf: bytes | bytearray, i: int) -> Layout:
        intro, fn = buf[i], buf[i + 1]
        if fn < 0x20 and intro not in (DLE, DC2):
            return 1, 0, _NAMES[intro] + " ?"  # a lone introducer: drop it only
        return _INTRODUCERS[intro](buf, i)

    def _emit(self, raw: bytes, payload: int, name: str, out: list[Token]) -> None:
        args = raw[3:] if name.startswith(_THREE_BYTE_NAMES) else raw[2:]
        out.append(Token("command", raw, name=name, args=args))
        if payload == _UNTIL_NUL:
            self._until_nul = True
            self._nul_seen = 0
        elif payload > 0:
            self._skip = payload


_THREE_BYTE_NAMES = ("ESC ( ", "GS ( ", "FS ( ", "GS v 0", "GS 8 L", "GS Q 0", "FS g ")
_NAMES = {ESC: "ESC", GS: "GS", FS: "FS", DLE: "DLE", DC2: "DC2"}


def tokenize(data: bytes) -> list[Token]:
    """All tokens of a complete byte string."""
    tokenizer = Tokenizer()
    return tokenizer.feed(data) + tokenizer.flush()
