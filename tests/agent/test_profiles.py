"""Every shipped profile (all families) loads; broken ones are named by file and field."""

from pathlib import Path

import pytest
import yaml

from agent.profiles import all_profiles, default_profiles_dir, load_profile, parse_profile
from wire.configfile import ConfigError

SHIPPED = default_profiles_dir()
GOLDEN = Path(__file__).parent / "golden"


def test_profiles_are_shipped() -> None:
    names = all_profiles(SHIPPED)
    assert {"river/generic-level-float32", "river/radar-level-mm"} <= set(names)
    assert {
        "garbage/ultrasonic-bin-modbus",
        "garbage/ultrasonic-bin-serial",
        "traffic/vehicle-counter-4lane",
    } <= set(names)


@pytest.mark.parametrize("name", all_profiles(SHIPPED))
def test_shipped_profile_loads(name: str) -> None:
    driver, profile = load_profile(SHIPPED, name)
    assert profile.driver == driver.name
    text = (SHIPPED / f"{name}.yaml").read_text(encoding="utf-8")
    assert text.lstrip().startswith("#"), f"{name}: say in a comment what device it models"


@pytest.mark.parametrize("name", [n for n in all_profiles(SHIPPED) if n.startswith("river/")])
def test_river_profile_has_a_golden_case(name: str) -> None:
    case_file = GOLDEN / name.removeprefix("river/") / "case.yaml"
    assert case_file.is_file(), f"{name}: add {case_file}"
    assert yaml.safe_load(case_file.read_text(encoding="utf-8"))["profile"] == name


@pytest.mark.parametrize(
    "name", [n for n in all_profiles(SHIPPED) if n.startswith(("garbage/", "traffic/"))]
)
def test_garbage_and_traffic_profiles_have_a_golden_case(name: str) -> None:
    case_file = GOLDEN / name.replace("/", "-") / "case.yaml"
    assert case_file.is_file(), f"{name}: add {case_file}"
    assert yaml.safe_load(case_file.read_text(encoding="utf-8"))["profile"] == name


def write(tmp_path: Path, text: str, name: str = "river/broken") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_profile_names_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "driver: modbus\npoints:\n"
        "  - {metric: level_m, register: 0, type: float32}\n"
        "  - {metric: temp, register: 2, type: float33}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_profile(tmp_path, "river/broken")
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: points[1].type: ")
    assert "Invalid enum value 'float33'" in problem


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("modle: x\npoints:\n  - {metric: a, register: 0}\n", "modle: unknown key"),
        (
            "points:\n  - {metric: a, register: 0, function: coil, type: int16}\n",
            "points[0]: type: a coil is one bit: type must be bool, not int16",
        ),
        ("points:\n  - {metric: b, register: 99999}\n", "points[0].register: Expected `int`"),
    ],
)
def test_each_problem_is_named(tmp_path: Path, text: str, problem: str) -> None:
    # validation stops at the first problem: each is checked in a file of its own
    path = write(tmp_path, "driver: modbus\n" + text)
    with pytest.raises(ConfigError) as info:
        parse_profile(path)
    assert info.value.problems[0].startswith(f"{path}: {problem}")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("points: []\n", "driver: required key is missing"),
        ("driver: modbuss\n", "driver: unknown driver 'modbuss'"),
        ("- driver: modbus\n", "expected a mapping"),
        ("driver: modbus\npoints: [\n", "invalid YAML"),
        ("driver: modbus\n", "points: required key is missing"),
    ],
)
def test_broken_files_are_explained(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        parse_profile(path)
    assert str(path) in info.value.problems[0] and words in info.value.problems[0]
