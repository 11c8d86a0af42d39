"""batch, tried as a new user would: 20 rows, one bad; then fixed."""

import time
from pathlib import Path

from agent.config import load_config

HEADER = "id,site,name,lat,lon,timezone\n"
BROKER = "mqtt://broker.example:1883"


def rows(bad_line: int | None = None) -> str:
    text = HEADER
    for i in range(1, 21):
        lat = "-3.70" if i + 1 != bad_line else "-93.7"  # line i+1 holds gateway i
        tz = ["WIB", "WITA", "WIT", "Asia/Jakarta"][i % 4]
        text += f'gw-ambon-{i:02d},"Pasar {i}, Ambon",Gateway {i},{lat},128.18,{tz}\n'
    return text


def test_a_bad_row_is_named_and_nothing_is_written(run, tmp_path: Path) -> None:
    csv = tmp_path / "gateways.csv"
    csv.write_text(rows(bad_line=8))
    out = tmp_path / "out"
    r = run("batch", csv, "--out", out, "--broker", BROKER)
    assert r.rc == 1
    assert f"{csv}:8: column lat: '-93.7' is not a latitude" in r.err
    assert "nothing was written" in r.err
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "state" / "gateways").exists() or not any(
        (tmp_path / "state" / "gateways").iterdir()
    )

    csv.write_text(rows())
    started = time.monotonic()
    r = run("batch", csv, "--out", out, "--broker", BROKER, "--labels")
    elapsed = time.monotonic() - started
    print(f"batch: 20 gateways in {elapsed:.2f}s")
    assert r.rc == 0, r.err
    bundles = sorted(p.name for p in out.iterdir() if p.name.startswith("gw-"))
    assert bundles == [f"gw-ambon-{i:02d}" for i in range(1, 21)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left over
    for name in bundles:
        config = load_config(out / name / "agent.yaml")
        assert config.gateway.id == name
        assert (out / name / "label.png").exists()
    passwd = (out / "broker" / "passwd").read_text().splitlines()
    assert len(passwd) == 21  # 20 gateways + central
    acl = (out / "broker" / "acl").read_text()
    assert acl.count("\nuser gw-ambon-") == 20
    assert (out / "broker" / "mosquitto.conf").exists()
    assert config.gateway.site == "Pasar 20, Ambon"


def test_every_kind_of_bad_row_is_reported(run, tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    csv.write_text(
        HEADER
        + "gw-1,A,,,,\n"
        + "GW 2,B,,,,\n"  # line 3: id
        + "gw-3,,,,,\n"  # line 4: site
        + "gw-4,D,,1.0,,WIB\n"  # line 5: lon missing
        + "gw-5,E,,1.0,200,WIB\n"  # line 6: lon range
        + "gw-6,F,,,,Europe/Paris\n"  # line 7: timezone
        + "gw-1,G,,,,\n"  # line 8: duplicate
        + "gw-8,H\n"  # line 9: cells
    )
    r = run("batch", csv, "--out", tmp_path / "out", "--broker", BROKER)
    assert r.rc == 1
    for expected in (
        ":3: column id:",
        ":4: column site:",
        ":5: column lon: give both",
        ":6: column lon: '200' is not a longitude",
        ":7: column timezone:",
        ":8: column id: gw-1 is already used on line 2",
        ":9: 2 cells",
    ):
        assert expected in r.err, expected
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_header_is_reported(run, tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    csv.write_text("id,place\ngw-1,A\n")
    r = run("batch", csv, "--out", tmp_path / "out", "--broker", BROKER)
    assert (
        r.rc == 1 and ":1: unknown column(s) place" in r.err and "missing column(s) site" in r.err
    )


def test_existing_gateways_are_not_silently_replaced(run, tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    csv.write_text(HEADER + "gw-1,A,,,,\ngw-2,B,,,,\n")
    assert run("batch", csv, "--out", tmp_path / "out", "--broker", BROKER).rc == 0
    before = (tmp_path / "out" / "gw-1" / "mqtt.password").read_text()
    csv.write_text(HEADER + "gw-1,A,,,,\ngw-3,C,,,,\n")
    r = run("batch", csv, "--out", tmp_path / "out", "--broker", BROKER)
    assert r.rc == 1 and "gw-1 was provisioned before" in r.err
    assert not (tmp_path / "out" / "gw-3").exists()
    assert (tmp_path / "out" / "gw-1" / "mqtt.password").read_text() == before
