"""Test receipts as ESC/POS byte streams, built the way POS software sends them.

``Receipt`` is a tiny ESC/POS writer; ``restaurant()``, ``hotel()``,
``parking()`` and ``image_only()`` build realistic receipts with raster logos,
QR codes and barcodes whose binary payloads deliberately contain bytes that
look like text, line feeds and cut commands. ``python -m tests.agent.escpos_samples
DIR`` writes the golden captures.
"""

import sys
from collections.abc import Callable
from pathlib import Path

ESC, GS, FS, DLE = b"\x1b", b"\x1d", b"\x1c", b"\x10"

# A payload that looks like text and like commands: a tokenizer that reads
# binary as text sees a TOTAL line and several cuts in it.
TRAP = b"TOTAL 999.999\n\x1dV\x00\x1bi\x1bm\x1dVA\x03PB1 1.000\n"


class Receipt:
    def __init__(self, width: int = 32, encoding: str = "cp858") -> None:
        self.width = width
        self.encoding = encoding
        self.out = bytearray()

    def raw(self, data: bytes) -> "Receipt":
        self.out += data
        return self

    def init(self) -> "Receipt":
        return self.raw(ESC + b"@")

    def code_page(self, n: int, encoding: str) -> "Receipt":
        self.encoding = encoding
        return self.raw(ESC + b"t" + bytes([n]))

    def align(self, n: int) -> "Receipt":
        return self.raw(ESC + b"a" + bytes([n]))

    def bold(self, on: bool = True) -> "Receipt":
        return self.raw(ESC + b"E" + bytes([int(on)]))

    def underline(self, n: int) -> "Receipt":
        return self.raw(ESC + b"-" + bytes([n]))

    def mode(self, n: int) -> "Receipt":
        return self.raw(ESC + b"!" + bytes([n]))

    def size(self, n: int) -> "Receipt":
        return self.raw(GS + b"!" + bytes([n]))

    def line(self, text: str = "", eol: bytes = b"\n") -> "Receipt":
        return self.raw(text.encode(self.encoding) + eol)

    def lr(self, left: str, right: str) -> "Receipt":
        gap = max(1, self.width - len(left) - len(right))
        return self.line(left + " " * gap + right)

    def rule(self, char: str = "-") -> "Receipt":
        return self.line(char * self.width)

    def feed(self, n: int) -> "Receipt":
        return self.raw(ESC + b"d" + bytes([n]))

    def raster(self, width_bytes: int = 16, height: int = 24) -> "Receipt":
        """``GS v 0``: a logo whose bitmap holds TRAP and every byte value."""
        size = width_bytes * height
        pattern = (TRAP + bytes(range(256))) * (size // (len(TRAP) + 256) + 1)
        header = GS + b"v0\x00" + _u16(width_bytes) + _u16(height)
        return self.raw(header + pattern[:size])

    def qr(self, data: bytes) -> "Receipt":
        """``GS ( k``: model, size, error level, store, print."""
        self.raw(GS + b"(k\x04\x00\x31\x41\x32\x00")
        self.raw(GS + b"(k\x03\x00\x31\x43\x06")
        self.raw(GS + b"(k\x03\x00\x31\x45\x31")
        self.raw(GS + b"(k" + _u16(len(data) + 3) + b"\x31\x50\x30" + data)
        return self.raw(GS + b"(k\x03\x00\x31\x51\x30")

    def barcode_nul(self, data: bytes, m: int = 4) -> "Receipt":
        """``GS k m d1..dk NUL`` (m 0-6)."""
        return self.raw(GS + b"h\x50" + GS + b"H\x02" + GS + b"k" + bytes([m]) + data + b"\x00")

    def barcode_len(self, data: bytes, m: int = 73) -> "Receipt":
        """``GS k m n d1..dn`` (m 65-73); Code 128 data may hold any byte."""
        return self.raw(GS + b"k" + bytes([m, len(data)]) + data)

    def bit_image(self, columns: int = 40, m: int = 33) -> "Receipt":
        """``ESC * m nL nH``: 24-dot rows (m 32/33) have 3 bytes per column."""
        per = 1 if m in (0, 1) else 3
        body = (TRAP * 200)[: columns * per]
        return self.raw(ESC + b"*" + bytes([m]) + _u16(columns) + body + b"\n")

    def graphics_store(self, size: int = 300) -> "Receipt":
        """``GS ( L`` store a raster graphic, then ``GS ( L`` print it."""
        body = b"\x30\x70\x30\x01\x01\x31" + _u16(32) + _u16(8) + (TRAP * 40)[:size]
        self.raw(GS + b"(L" + _u16(len(body)) + body)
        return self.raw(GS + b"(L\x02\x00\x30\x32")

    def graphics_big(self, size: int = 500) -> "Receipt":
        """``GS 8 L p1 p2 p3 p4 m fn ...`` with a 32-bit length."""
        body = b"\x30\x70\x30\x01\x01\x31" + _u16(32) + _u16(8) + (TRAP * 40)[:size]
        return self.raw(GS + b"8L" + len(body).to_bytes(4, "little") + body)

    def nv_logo(self) -> "Receipt":
        return self.raw(FS + b"p\x01\x00")

    def drawer(self) -> "Receipt":
        return self.raw(ESC + b"p\x00\x19\xfa")

    def status(self) -> "Receipt":
        return self.raw(DLE + b"\x04\x01" + GS + b"r\x01")

    def cut(self, m: int = 66, n: int = 3) -> "Receipt":
        if m in (65, 66, 97, 98, 103, 104):
            return self.raw(GS + b"V" + bytes([m, n]))
        return self.raw(GS + b"V" + bytes([m]))

    def bytes(self) -> bytes:
        return bytes(self.out)


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "little")


def restaurant(no: str = "R-000123", cut: tuple[int, int] = (66, 3)) -> bytes:
    """A restaurant bill: Sub Total, Service, PB1 10%, TOTAL, Total Item trap."""
    r = Receipt(width=32).init().status().code_page(19, "cp858").align(1)
    r.raster(width_bytes=24, height=40)
    r.bold().size(0x11).line("RM SEDERHANA").size(0).bold(False)
    r.line("Jl. Merdeka No. 17, Bandung").line("Telp 022-123456").align(0).rule()
    r.lr("No. Struk:", no).lr("Tgl: 23/11/2026", "Jam: 14:05").lr("Kasir: Dewi", "Meja: 7").rule()
    r.line("Nasi Rendang").lr("  2 x 45.000", "90.000")
    r.line("Es Teh Manis").lr("  3 x 8.000", "24.000")
    r.line("Sate Ayam").lr("  1 x 35.000", "35.000")
    r.line("Diskon Member").lr("", "-5.000").rule()
    r.lr("Sub Total", "144.000")
    r.lr("Service 5%", "7.200")
    r.lr("PB1 10%", "15.120")
    r.bold().size(0x01).lr("TOTAL", "Rp 166.320").size(0).bold(False)
    r.lr("Total Item", "6")
    r.lr("Tunai", "200.000").lr("Kembali", "33.680").rule()
    r.align(1).qr(b"https://pajak.bandung.go.id/s/" + no.encode() + b"\x1dV\x00\n").line()
    r.line("Terima kasih atas kunjungan Anda").feed(4).cut(*cut).drawer()
    return r.bytes()


def hotel(folio: str = "F-2026-0451") -> bytes:
    """A hotel folio: comma thousands, Service Charge, Tax, Grand Total, a Total line."""
    r = Receipt(width=42).init().code_page(16, "cp1252").align(1)
    r.graphics_store().graphics_big()
    r.line("HOTEL GRAND PRIANGAN").line("Jl. Asia Afrika 8, Bandung").align(0).rule("=")
    r.lr("Folio No :", folio).lr("Guest    :", "Mr. André Müller")
    r.lr("Check In :", "20/11/2026").lr("Check Out:", "23/11/2026")
    r.lr("Date     :", "23/11/2026 11:42").rule()
    r.lr("Room Deluxe 3 nights", "1,950,000.00")
    r.lr("Breakfast 2 pax x 3", "450,000.00")
    r.lr("Laundry", "75,000.00").rule()
    r.lr("Sub Total", "2,475,000.00")
    r.lr("Service Charge 10%", "247,500.00")
    r.lr("Tax 11%", "299,475.00")
    r.lr("Total Room Charge", "1,950,000.00")
    r.rule().bold().lr("GRAND TOTAL", "IDR 3,021,975.00").bold(False)
    r.lr("Paid by Card", "3,021,975.00").lr("Card No", "**** 1234")
    r.barcode_len(b"{B" + folio.encode() + b"\x0a\x1dV", m=73)
    r.line().line("Thank you for staying with us").feed(3).cut(1)
    return r.bytes()


def parking(ticket: str = "PK-88213") -> bytes:
    """A parking ticket: no cutter (ends by idle gap or stream end), TARIF, no tax."""
    r = Receipt(width=32).init().align(1).nv_logo().line("PARKIR PLAZA BRAGA").align(0)
    r.barcode_nul(b"8821300", m=4)
    r.bit_image(columns=48, m=33)
    r.lr("No. Tiket :", ticket).lr("Plat      :", "D 1234 ABC")
    r.lr("Masuk  :", "23-11-2026 08:02:11").lr("Keluar :", "23-11-2026 10:15:40")
    r.lr("Durasi :", "2 jam 13 menit")
    r.lr("TARIF  :", "Rp.6.000")
    r.line("Tarif sudah termasuk pajak parkir")
    r.line("Simpan karcis ini").feed(2)
    return r.bytes()


def image_only() -> bytes:
    """A receipt printed entirely as a picture (some Android POS do): no text."""
    return Receipt().init().align(1).raster(width_bytes=48, height=60).feed(3).cut(0).bytes()


def crlf_receipt() -> bytes:
    """Lines ended by CR LF, amount under its label, a cut by ``ESC i``."""
    r = Receipt(width=32).init()
    for text in ("KEDAI KOPI NUSANTARA", "Nota: KK/2611/0042", "23 Nov 2026 09:15", "Kopi Susu 2"):
        r.line(text, eol=b"\r\n")
    r.line("Subtotal 1.250.000,00", eol=b"\r\n").line("PBJT 10% 125.000,00", eol=b"\r\n")
    r.line("TOTAL", eol=b"\r\n").line("        Rp 1.375.000,00", eol=b"\r\n")
    r.line("Total Qty 2", eol=b"\r\n").raw(ESC + b"i")
    return r.bytes()


GOLDEN: dict[str, Callable[[], bytes]] = {
    "restaurant": restaurant,
    "hotel": hotel,
    "parking": parking,
    "mixed": lambda: (
        restaurant("R-000124", cut=(0, 0))
        + b"\x10\x04\x01"  # a status poll between jobs: not a receipt
        + crlf_receipt()
        + image_only()
        + restaurant("R-000125", cut=(65, 0))
        + parking()
    ),
}


def write_golden(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, build in GOLDEN.items():
        (folder / f"{name}.bin").write_bytes(build())


if __name__ == "__main__":
    write_golden(Path(sys.argv[1]))
