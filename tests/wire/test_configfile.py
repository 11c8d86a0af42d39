"""Every config, profile and rules file: a key given twice is an error naming the file and
the key; secrets are strings, never empty."""

from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from agent.profiles import parse_profile
from central.alerts.rules import load_rules
from central.config import load_config as load_central_config
from wire.configfile import ConfigError, parse_yaml

CENTRAL = """\
mqtt:
  url: mqtt://127.0.0.1:1883
  username: pantau-central
  password: {password}
influx:
  url: http://127.0.0.1:8086
  database: pantau
data_dir: {data}
webhooks:
  - name: chat
    url: http://127.0.0.1:9/hook
    secret: {secret}
"""


def central(tmp_path: Path, password: str = '"hunter2"', secret: str = '"s3cret"') -> Path:
    path = tmp_path / "central.yaml"
    path.write_text(CENTRAL.format(password=password, secret=secret, data=tmp_path / "d"))
    return path


def problems_of(load, path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load(path)
    return "\n".join(err.value.problems)


def test_a_key_given_twice_names_the_file_line_and_key_path():
    with pytest.raises(ConfigError) as err:
        parse_yaml(
            "mqtt:\n  url: a\n  password: x\n  url: b\ndevices:\n  - {id: a, id: b}\n", "f.yaml"
        )
    assert err.value.problems == [
        "f.yaml:4:3: mqtt.url: duplicate key (given twice in the same mapping; remove one)",
        "f.yaml:6:13: devices[0].id: duplicate key (given twice in the same mapping; remove one)",
    ]


def test_merge_keys_and_the_same_key_in_different_mappings_are_fine():
    data = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\nthird: {x: 1}\n", "f")
    assert data["other"] == {"x": 3, "y": 2}


def test_duplicate_key_in_central_config(tmp_path):
    path = central(tmp_path)
    path.write_text(path.read_text() + "data_dir: /elsewhere\n")
    assert f"{path}:13:1: data_dir: duplicate key" in problems_of(load_central_config, path)


def test_duplicate_key_in_agent_config(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("gateway: {id: gw-1, id: gw-2}\n")
    assert f"{path}:1:21: gateway.id: duplicate key" in problems_of(load_agent_config, path)


def test_duplicate_key_in_a_profile(tmp_path):
    shipped = Path(__file__).parents[2] / "firmware-profiles" / "simulated" / "sine.yaml"
    path = tmp_path / "sine.yaml"
    path.write_text(shipped.read_text() + "driver: modbus\n")
    assert f"{path}:" in problems_of(parse_profile, path)
    assert ": driver: duplicate key" in problems_of(parse_profile, path)


def test_duplicate_key_in_a_rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: a\n    name: b\n")
    assert f"{path}:3:5: rules[0].name: duplicate key" in problems_of(load_rules, path)


def test_an_unquoted_number_as_a_secret_is_an_error_not_5349(tmp_path):
    path = central(tmp_path, password="012345")
    text = problems_of(load_central_config, path)
    assert "mqtt.password: expected a string: put the secret in quotes (value hidden)" in text
    assert "5349" not in text and "012345" not in text
    assert load_central_config(central(tmp_path, password='"012345"')).mqtt.secret() == "012345"


@pytest.mark.parametrize("empty", ['""', '"   "'])
def test_empty_or_blank_secrets_are_refused(tmp_path, empty):
    assert "mqtt.password: must not be empty" in problems_of(
        load_central_config, central(tmp_path, password=empty)
    )
    assert "webhooks[0].secret: must not be empty" in problems_of(
        load_central_config, central(tmp_path, secret=empty)
    )


def test_an_empty_webhook_secret_file_is_refused(tmp_path):
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(" \n")
    path = central(tmp_path)
    path.write_text(path.read_text().replace('secret: "s3cret"', f"secret_file: {secret_file}"))
    assert f"{secret_file} is empty" in problems_of(load_central_config, path)
