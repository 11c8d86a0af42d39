"""Tokens → receipts: where one receipt ends and what text it printed.

A receipt ends at every cut command (``GS V``, ``ESC i``, ``ESC m``; the cut
belongs to the receipt it ends), after ``idle_gap`` seconds without a byte,
when its text reaches ``max_lines`` lines (``ended_by: "size"``), or at the end
of the stream (a closed TCP print job, the end of a capture file).

A stretch between two boundaries that printed nothing (only ``ESC @``, status
requests, a drawer kick) is not a receipt and is not reported. A stretch that
printed only images or barcodes *is* reported: it is a receipt printed as a
picture, which the parser will flag as having no text.

Raw bytes are kept up to ``max_bytes`` per receipt; past that they are counted
(``size``) but not kept (``truncated``), and text is still read to the end.
"""

import codecs
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.escpos.tokenizer import Token, Tokenizer

EndedBy = Literal["cut", "idle", "size", "end", "error"]

Mark = tuple[bytearray, int]

MAX_LINE_CHARS = 512
"""A line longer than this (no line feed for a long time) is broken."""

FONT_A_DOTS = 12
"""Width of one character of font A in dots (the column unit of a line)."""
FONT_B_DOTS = 9
PRINT_AREA_DOTS = 576
"""Print area width when the POS doesn't set one (GS W): 80 mm paper at 203 dpi."""
MAX_GAP = 80
"""Spaces rendered for one gap at most (a position far past any paper width)."""
TAB_EVERY = 8
"""Default horizontal tab stops: every 8 characters."""

_GRAPHICS = frozenset(
    {
        "GS v 0",
        "GS ( L",
        "GS 8 L",
        "ESC *",
        "GS k",
        "GS ( k",
        "FS p",
        "GS /",
        "ESC Z",
        "DC2 *",
        "GS Q 0",
    }
)
_LINE_END_COMMANDS = frozenset({"ESC d", "ESC J", "ESC e", "ESC K", "ESC FF"})


KATAKANA = "katakana"
"""Epson's character table 1 (``ESC t 1``): ASCII, half-width katakana at
0xA1-0xDF and block/box graphics at 0x80-0x9F and 0xE0-0xFF. No Python codec
has it; the graphics come out as box-drawing characters (rules and borders)."""


class _KatakanaDecoder:
    def decode(self, data: bytes, final: bool = False) -> str:
        out = []
        for b in data:
            if b < 0x80:
                out.append(chr(b))
            elif 0xA1 <= b <= 0xDF:
                out.append(chr(0xFF61 + b - 0xA1))
            elif b == 0xA0:
                out.append(" ")
            elif b in (0x96, 0x97):
                out.append("\u2502")  # vertical rule
            else:
                out.append("\u2500")  # horizontal rules, corners, blocks
        return "".join(out)

    def reset(self) -> None:
        pass


def _decoder(code_page: str) -> Any:
    if code_page == KATAKANA:
        return _KatakanaDecoder()
    return codecs.getincrementaldecoder(code_page)(errors="replace")


class _Line:
    """Where the printer puts each character of the line being printed.

    Positions are in dots from the left edge of the paper, as the commands
    give them: ``ESC $`` (absolute), ``ESC \\`` (relative), ``HT`` (to the next
    tab stop set by ``ESC D``), ``GS L`` (left margin), ``ESC a`` (centred or
    right-justified in the print area set by ``GS W``, 576 dots unless the POS
    sets it, for a line not placed by ``ESC $``/``ESC \\``); character widths follow
    the font (``ESC M``, ``ESC !``), the size (``GS !``, ``ESC !``) and the
    right-side spacing (``ESC SP``). The motion unit is taken as one dot.
    Rendering puts the characters in the order they land on paper, with spaces
    for the gaps, so text sent out of visual order comes out in place and a
    column placed at dot 300 starts near character column 25.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.font_b = False
        self.esc_bang_wide = False
        self.gs_wide = 1
        self.spacing = 0
        self.margin = 0
        self.area = PRINT_AREA_DOTS
        self.justify = 0
        self.tabs: list[int] = []
        self.clear()

    def clear(self) -> None:
        self.x = self.margin
        self.chars: list[tuple[int, int, int, str]] = []  # x, width, order, char
        self.line_justify = self.justify  # ESC a counts at the start of a line
        self.positioned = False

    @property
    def char_dots(self) -> int:
        base = FONT_B_DOTS if self.font_b else FONT_A_DOTS
        return (base + self.spacing) * max(self.gs_wide, 2 if self.esc_bang_wide else 1)

    def put(self, text: str) -> None:
        for ch in text:
            if ch == "\t":
                self.tab()
                continue
            width = self.char_dots
            self.chars.append((self.x, width, len(self.chars), ch))
            self.x += width

    def tab(self) -> None:
        unit = FONT_B_DOTS if self.font_b else FONT_A_DOTS
        column = (self.x - self.margin) / unit
        stops = self.tabs or range(TAB_EVERY, 256, TAB_EVERY)
        for stop in stops:
            if stop > column + 1e-9:
                self.x = self.margin + stop * unit
                return

    def _justified(self) -> list[tuple[int, int, int, str]]:
        if not self.line_justify or self.positioned or not self.chars:
            return self.chars
        used = max(x + w for x, w, _, _ in self.chars) - self.margin
        room = max(0, self.area - used)
        shift = room // 2 if self.line_justify == 1 else room
        return [(x + shift, w, n, ch) for x, w, n, ch in self.chars]

    def render(self) -> str:
        placed: list[tuple[int, int, int, str]] = []
        for item in sorted(self._justified()):
            if placed and item[0] < placed[-1][0] + placed[-1][1] // 2:
                # printed over the same place: the later character wins, but a
                # space printed over ink leaves the ink
                if item[2] > placed[-1][2] and (item[3] != " " or placed[-1][3] == " "):
                    placed[-1] = item
                continue
            placed.append(item)
        out: list[str] = []
        column = 0
        end = 0
        for x, width, _, ch in placed:
            target = round(x / FONT_A_DOTS)
            if out and x - end >= FONT_A_DOTS // 2:
                gap = max(1, target - column)
            elif not out:
                gap = target
            else:
                gap = 0
            gap = min(gap, MAX_GAP)
            out.append(" " * gap + ch)
            column += gap + max(1, round(width / FONT_A_DOTS))
            end = x + width
        return "".join(out).rstrip()

    @property
    def length(self) -> int:
        return len(self.chars)


@dataclass
class RawReceipt:
    raw: bytes
    size: int
    lines: list[str]
    ended_by: EndedBy
    graphics: int = 0
    code_pages: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.size > len(self.raw)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ReceiptAssembler:
    """Feed bytes with the time they arrived; get finished receipts back."""

    def __init__(
        self,
        code_page: str = "cp437",
        code_pages: dict[int, str] | None = None,
        idle_gap: float = 0.0,
        max_bytes: int = 65536,
        max_lines: int = 1000,
    ) -> None:
        _decoder(code_page)
        self.default_code_page = code_page
        self.code_pages = dict(code_pages or {})
        self.idle_gap = idle_gap
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.tokenizer = Tokenizer()
        self._last_byte: float | None = None
        self._code_page = code_page
        self._decoder = _decoder(code_page)
        self._tab_args = False
        self._lf_seen = False  # the POS ends its lines with LF (CR only returns the carriage)
        self._line = _Line()  # printer state (fonts, margin, tabs) lasts until ESC @
        self._reset()

    def _reset(self) -> None:
        self._raw = bytearray()
        self._size = 0
        self._lines: list[str] = []
        self._line.clear()
        self._content = False
        self._graphics = 0
        self._pending_cr = False
        self._used_pages: set[str] = set()

    def feed(self, data: bytes, now: float | None = None) -> list[RawReceipt]:
        """Bytes as they arrived at ``now`` (monotonic seconds; None: no idle gaps)."""
        out = self.idle(now) if now is not None else []
        if data:
            for token in self.tokenizer.feed(data):
                self._token(token, out)
            if now is not None:
                self._last_byte = now
        return out

    def idle(self, now: float) -> list[RawReceipt]:
        """The receipt under way, if ``idle_gap`` has passed since its last byte."""
        if (
            self.idle_gap > 0
            and self._last_byte is not None
            and now - self._last_byte >= self.idle_gap
            and self._content
        ):
            return [self._close("idle")]
        return []

    def end(self) -> list[RawReceipt]:
        """The end of the stream: whatever is under way is a receipt if it printed."""
        out: list[RawReceipt] = []
        for token in self.tokenizer.flush():
            self._token(token, out)
        if self._content:
            out.append(self._close("end"))
        else:
            self._reset()
        return out

    def mark(self) -> Mark:
        """Where the receipt under way stands; take it before ``feed``."""
        return self._raw, len(self._raw)  # a new bytearray per receipt: this one stays

    @staticmethod
    def salvage(mark: Mark, data: bytes) -> bytes:
        """After ``feed(data)`` raised: the receipt under way at ``mark`` (its raw
        bytes as kept, up to ``max_bytes``) followed by ``data``."""
        raw, size = mark
        return bytes(raw[:size]) + data

    @property
    def pending(self) -> bool:
        """True while a receipt is under way."""
        return self._content

    # tokens

    def _token(self, token: Token, out: list[RawReceipt]) -> None:
        """Line ends as printers make them: LF prints the line and feeds; CR
        returns the carriage. A stream that ends its lines with CR alone (a POS
        set up for printers with automatic line feed) has shown no LF: there a
        CR not followed by LF ends the line. Once LF has been seen, a CR
        followed by more text on the same line is a carriage return: what
        follows is printed over the same line (two-colour printing on impact
        printers). CR LF and LF CR are one line end either way."""
        self._keep(token.raw)
        kind = token.kind
        if kind == "newline":
            self._newline(token.raw, out)
            return
        if self._pending_cr and kind != "data":
            self._pending_cr = False
            if not self._lf_seen:
                self._end_line(out)
        if kind == "text":
            self._put(token.raw)
            if not self._content and token.raw.strip():
                self._content = True
            if self._line.length >= MAX_LINE_CHARS:
                self._end_line(out)
        elif kind == "command":
            self._tab_args = False
            self._command(token, out)
        elif self._tab_args:  # data after ESC D: the tab stops
            self._tab_stops(token.raw)

    def _newline(self, raw: bytes, out: list[RawReceipt]) -> None:
        if raw == b"\r":
            if self._pending_cr and not self._lf_seen:
                self._end_line(out)  # CR CR in a CR-only stream: a blank line
            self._pending_cr = True
            self._line.x = self._line.margin
            return
        if raw == b"\n":
            self._lf_seen = True
        self._pending_cr = False
        self._end_line(out)

    def _command(self, token: Token, out: list[RawReceipt]) -> None:
        name, args, line = token.name, token.args, self._line
        if name == "ESC t":
            self._switch_code_page(self.code_pages.get(args[0], self._code_page))
        elif name == "ESC @":
            self._switch_code_page(self.default_code_page)
            chars = line.chars
            line.reset()
            line.chars = chars  # text already sent stays in the buffer
        elif name in _GRAPHICS:
            self._content = True
            self._graphics += 1
        elif name in _LINE_END_COMMANDS:
            self._end_line(out)
        elif name == "ESC $":
            line.x = line.margin + (args[0] | args[1] << 8)
            line.positioned = True
        elif name == "ESC \\":
            move = args[0] | args[1] << 8
            line.x = max(line.margin, line.x + (move - 0x10000 if move & 0x8000 else move))
            line.positioned = True
        elif name == "GS L":
            at_start = not line.chars
            line.margin = args[0] | args[1] << 8
            if at_start:
                line.x = line.margin
        elif name == "GS W":
            line.area = (args[0] | args[1] << 8) or PRINT_AREA_DOTS
        elif name == "ESC a":
            line.justify = {0: 0, 1: 1, 2: 2, 48: 0, 49: 1, 50: 2}.get(args[0], 0)
            if not line.chars:
                line.line_justify = line.justify
        elif name == "ESC !":
            line.font_b = bool(args[0] & 0x01)
            line.esc_bang_wide = bool(args[0] & 0x20)
        elif name == "GS !":
            line.gs_wide = (args[0] >> 4 & 0x07) + 1
        elif name == "ESC M":
            line.font_b = args[0] in (1, 49)
        elif name == "ESC SP":
            line.spacing = args[0]
        elif name == "ESC D":
            line.tabs = []
            self._tab_args = True
        elif token.is_cut:
            self._end_line(out, check_size=False)
            if self._content:
                out.append(self._close("cut"))
            else:
                self._reset()

    # text

    def _keep(self, raw: bytes) -> None:
        room = self.max_bytes - len(self._raw)
        if room > 0:
            self._raw += raw[:room]
        self._size += len(raw)

    def _put(self, raw: bytes) -> None:
        text = self._decoder.decode(raw)
        if text:
            self._used_pages.add(self._code_page)
            self._line.put(text)

    def _switch_code_page(self, name: str) -> None:
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._line.put(rest)
        if name != self._code_page:
            self._code_page = name
            self._decoder = _decoder(name)
        else:
            self._decoder.reset()

    def _tab_stops(self, data: bytes) -> None:
        """The parameter bytes of ``ESC D`` (tab stops in characters, NUL-ended)."""
        stops = self._line.tabs
        for b in data:
            if b == 0 or (stops and b <= stops[-1]):
                self._tab_args = False
                return
            stops.append(b)

    def _render(self) -> str:
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._line.put(rest)
        line = self._line.render()
        self._line.clear()
        return line

    def _end_line(self, out: list[RawReceipt], check_size: bool = True) -> None:
        line = self._render()
        if not line and not self._lines:
            return  # blank lines before the first text are not kept
        self._lines.append(line)
        if check_size and len(self._lines) >= self.max_lines:
            out.append(self._close("size"))

    def _close(self, ended_by: EndedBy) -> RawReceipt:
        if self._line.chars:
            self._lines.append(self._render())
        while self._lines and not self._lines[-1]:
            self._lines.pop()
        receipt = RawReceipt(
            raw=bytes(self._raw),
            size=self._size,
            lines=self._lines,
            ended_by=ended_by,
            graphics=self._graphics,
            code_pages=sorted(self._used_pages),
        )
        self._reset()
        return receipt
