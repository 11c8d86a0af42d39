"""``label``: a printable label for the gateway's case: a QR code and the same in words.

When central's URL is known, the QR code holds only the gateway's page on central's
dashboard, ``<central>/gateways/<id>`` (:func:`gateway_page`), so a phone's camera opens
it at once. Without one it holds three lines of text, readable by any phone::

    pantau gateway gw-ambon-01
    site: Pasar Mardika
"""

from pathlib import Path
from xml.sax.saxutils import escape

import qrcode
from PIL import Image, ImageDraw, ImageFont

from provisioning.errors import ProvisionError

DPI = 300
WIDTH, HEIGHT = 720, 300  # 61 x 25 mm at 300 dpi


# the gateway's page on central's dashboard (central serves it on its API listener)
GATEWAY_PAGE = "/gateways/{id}"


def gateway_page(central_url: str, gateway_id: str) -> str:
    """``https://pantau.kota.go.id`` → ``https://pantau.kota.go.id/gateways/gw-ambon-01``."""
    return central_url.rstrip("/") + GATEWAY_PAGE.format(id=gateway_id)


def qr_text(gateway_id: str, site: str, check_url: str | None) -> str:
    """The URL alone when there is one (phones open it), else the id and site as text."""
    if check_url:
        return check_url
    return "\n".join([f"pantau gateway {gateway_id}", f"site: {site}"])


def _qr(text: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(text)
    code.make(fit=True)
    return code


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def write_label(
    out: Path, gateway_id: str, site: str, name: str | None, check_url: str | None
) -> Path:
    text = qr_text(gateway_id, site, check_url)
    lines = [gateway_id, site, *([name] if name else []), *([check_url] if check_url else [])]
    suffix = out.suffix.lower()
    if suffix == ".png":
        _png(out, text, lines)
    elif suffix == ".svg":
        _svg(out, text, lines)
    else:
        raise ProvisionError(f"--out {out}: a label is .png or .svg")
    return out


def _png(out: Path, text: str, lines: list[str]) -> None:
    qr = _qr(text).make_image(fill_color="black", back_color="white").get_image()
    qr = qr.convert("L").resize((HEIGHT, HEIGHT), Image.Resampling.NEAREST)
    label = Image.new("L", (WIDTH, HEIGHT), 255)
    label.paste(qr, (0, 0))
    draw = ImageDraw.Draw(label)
    y = 30
    for i, line in enumerate(lines):
        font = _font(44 if i == 0 else 24)
        shown = line if len(line) <= 32 else line[:31] + "…"
        draw.text((HEIGHT + 10, y), shown, fill=0, font=font)
        y += 60 if i == 0 else 36
    out.parent.mkdir(parents=True, exist_ok=True)
    label.save(out, dpi=(DPI, DPI))


def _svg(out: Path, text: str, lines: list[str]) -> None:
    code = _qr(text)
    matrix = code.get_matrix()
    cells = len(matrix)
    scale = HEIGHT / cells
    rects = "".join(
        f'<rect x="{x * scale:.2f}" y="{y * scale:.2f}" width="{scale:.2f}" height="{scale:.2f}"/>'
        for y, row in enumerate(matrix)
        for x, on in enumerate(row)
        if on
    )
    texts = []
    y = 70
    for i, line in enumerate(lines):
        size = 44 if i == 0 else 24
        weight = "bold" if i == 0 else "normal"
        texts.append(
            f'<text x="{HEIGHT + 10}" y="{y}" font-family="DejaVu Sans, sans-serif" '
            f'font-size="{size}" font-weight="{weight}">{escape(line)}</text>'
        )
        y += 60 if i == 0 else 36
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="61mm" height="25mm" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>'
        f'<g fill="black" shape-rendering="crispEdges">{rects}</g>{"".join(texts)}</svg>\n'
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg, encoding="utf-8")
