"""ESC/POS receipts copied by a tapping box: tokenizer, receipt boundaries, parser.

Bytes from the POS go through :class:`Tokenizer` (commands with their exact
parameter lengths, so images and codes are never read as text), then
:class:`ReceiptAssembler` (receipt boundaries, line ends, text decoded by code
page and placed where the printer puts it), then :class:`ReceiptParser`
(label patterns from the profile → fields; amounts exact, read by the
receipt's own conventions and the profile's locale).
:class:`ReceiptReader` chains the three for one profile.

Nothing here raises on input bytes: a receipt that can't be read comes out
with ``error`` set and its raw bytes. Profile mistakes are validation
errors (``wire.structs.ValidationError``) raised when the profile is loaded.
"""

from agent.escpos.assembler import RawReceipt, ReceiptAssembler
from agent.escpos.numbers import find_amounts, parse_amount, parse_count
from agent.escpos.profile import EscposProfile, FieldRule
from agent.escpos.receipt import ParsedReceipt, ReceiptParser, ReceiptReader, receipt_record
from agent.escpos.tokenizer import CUT_COMMANDS, Token, Tokenizer, tokenize

__all__ = [
    "CUT_COMMANDS",
    "EscposProfile",
    "FieldRule",
    "ParsedReceipt",
    "RawReceipt",
    "ReceiptAssembler",
    "ReceiptParser",
    "ReceiptReader",
    "Token",
    "Tokenizer",
    "find_amounts",
    "parse_amount",
    "parse_count",
    "receipt_record",
    "tokenize",
]
