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
from typing import Literal

from agent.escpos.tokenizer import Token, Tokenizer

EndedBy = Literal["cut", "idle", "size", "end", "error"]

Mark = tuple[bytearray, int]

MAX_LINE_CHARS = 512
"""A line longer than this (no line feed for a long time) is broken."""

_GRAPHICS = frozenset(
    {"GS v 0", "GS ( L", "GS 8 L", "ESC *", "GS k", "GS ( k", "FS p", "GS /", "ESC Z", "DC2 *"}
)
_LINE_END_COMMANDS = frozenset({"ESC d", "ESC J", "ESC e", "ESC K", "ESC FF"})
_SPACE_COMMANDS = frozenset({"ESC $", "ESC \\", "GS T"})


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
        codecs.lookup(code_page)
        self.default_code_page = code_page
        self.code_pages = dict(code_pages or {})
        self.idle_gap = idle_gap
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.tokenizer = Tokenizer()
        self._last_byte: float | None = None
        self._code_page = code_page
        self._reset()

    def _reset(self) -> None:
        self._raw = bytearray()
        self._size = 0
        self._lines: list[str] = []
        self._segments: list[str] = []
        self._text = bytearray()
        self._line_chars = 0
        self._content = False
        self._graphics = 0
        self._after_cr = False
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
        self._keep(token.raw)
        kind = token.kind
        if kind == "text":
            self._after_cr = False
            self._text += token.raw
            self._line_chars += len(token.raw)
            if not self._content and token.raw.strip():
                self._content = True
            if self._line_chars >= MAX_LINE_CHARS:
                self._end_line(out)
        elif kind == "newline":
            if token.raw == b"\n" and self._after_cr:
                self._after_cr = False
                return
            self._end_line(out)
            self._after_cr = token.raw == b"\r"
        elif kind == "command":
            self._after_cr = False
            self._command(token, out)

    def _command(self, token: Token, out: list[RawReceipt]) -> None:
        name = token.name
        if name == "ESC t":
            self._flush_text()
            self._code_page = self.code_pages.get(token.args[0], self._code_page)
        elif name == "ESC @":
            self._flush_text()
            self._code_page = self.default_code_page
        elif name in _GRAPHICS:
            self._content = True
            self._graphics += 1
        elif name in _LINE_END_COMMANDS:
            self._end_line(out)
        elif name in _SPACE_COMMANDS:
            self._text += b" "
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

    def _flush_text(self) -> None:
        if self._text:
            self._segments.append(bytes(self._text).decode(self._code_page, errors="replace"))
            self._used_pages.add(self._code_page)
            self._text.clear()

    def _end_line(self, out: list[RawReceipt], check_size: bool = True) -> None:
        self._flush_text()
        line = "".join(self._segments).replace("\t", " ").rstrip()
        self._segments.clear()
        self._line_chars = 0
        if not line and not self._lines:
            return  # blank lines before the first text are not kept
        self._lines.append(line)
        if check_size and len(self._lines) >= self.max_lines:
            out.append(self._close("size"))

    def _close(self, ended_by: EndedBy) -> RawReceipt:
        self._flush_text()
        if self._segments:
            self._lines.append("".join(self._segments).replace("\t", " ").rstrip())
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
