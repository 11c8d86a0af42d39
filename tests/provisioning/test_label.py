from pathlib import Path

from PIL import Image

from provisioning.label import qr_text

BROKER = "mqtt://broker.example:1883"


def test_png_label_with_a_qr_code(run, tmp_path: Path, central) -> None:
    assert (
        run(
            "gateway",
            "add",
            "gw-label-1",
            "--site",
            "Pasar Mardika",
            "--broker",
            BROKER,
            "--out",
            tmp_path / "b",
        ).rc
        == 0
    )
    r = run(
        "label",
        "gw-label-1",
        "--out",
        tmp_path / "label.png",
        "--check-url",
        "https://pantau.example/gateways/{id}",
    )
    assert r.rc == 0, r.err
    image = Image.open(tmp_path / "label.png")
    assert image.size == (720, 300)
    assert image.convert("L").getextrema() == (0, 255)  # something black on white
    r = run("label", "gw-label-1", "--out", tmp_path / "label.svg")
    svg = (tmp_path / "label.svg").read_text()
    assert svg.startswith("<svg") and "gw-label-1" in svg and "Pasar Mardika" in svg


def test_qr_payload_is_the_url_or_names_id_and_site() -> None:
    assert qr_text("gw-1", "Ambon", "https://c.example/gateways/gw-1") == (
        "https://c.example/gateways/gw-1"
    )
    assert qr_text("gw-1", "Ambon", None).splitlines() == ["pantau gateway gw-1", "site: Ambon"]


def test_unknown_gateway_and_bad_suffix(run, tmp_path: Path) -> None:
    r = run("label", "gw-nope", "--out", tmp_path / "x.png")
    assert r.rc == 1 and "not in the provisioning state" in r.err
    assert (
        run("gateway", "add", "gw-1", "--site", "A", "--broker", BROKER, "--out", tmp_path / "b").rc
        == 0
    )
    r = run("label", "gw-1", "--out", tmp_path / "x.pdf")
    assert r.rc == 1 and ".png or .svg" in r.err
