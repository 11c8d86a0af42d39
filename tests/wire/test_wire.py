"""The wire contract: topics, models, encoding limits, durations, config errors."""

import json

import pytest
from pydantic import BaseModel, ConfigDict

import wire
from wire.configfile import ConfigError, env_overrides, load_model
from wire.topics import subscription


def test_topics_round_trip():
    assert wire.topic("gw-ambon-01", "telemetry") == "pantau/v1/gw-ambon-01/telemetry"
    assert wire.parse_topic("pantau/v1/gw-ambon-01/cmd/reply") == ("gw-ambon-01", "cmd/reply")
    assert subscription("state") == "pantau/v1/+/state"


@pytest.mark.parametrize(
    "name",
    [
        "pantau/v2/gw/telemetry",
        "pantau/v1/GW/telemetry",
        "pantau/v1/gw/other",
        "x",
        "pantau/v1//state",
    ],
)
def test_foreign_topics_are_not_ours(name):
    assert wire.parse_topic(name) is None


@pytest.mark.parametrize("bad", ["", "-gw", "gw-", "Gw", "gw_1", "gw 1", "a" * 65])
def test_gateway_ids_are_checked(bad):
    assert not wire.gateway_id_ok(bad)
    with pytest.raises(ValueError):
        wire.topic(bad, "telemetry")


def _telemetry(**over):
    doc = {
        "v": 1,
        "gateway": "gw-1",
        "seq": 7,
        "site": "ambon",
        "readings": [
            {"device": "d1", "metric": "level_cm", "value": 12.5, "ts": 1_700_000_000_000}
        ],
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_decode_accepts_a_valid_batch():
    message = wire.decode("telemetry", _telemetry(), topic_gateway="gw-1")
    assert isinstance(message, wire.Telemetry)
    assert message.readings[0].quality == "good"
    assert wire.decode("telemetry", wire.encode(message)) == message


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (_telemetry(v=2), "schema"),
        (_telemetry(readings=[]), "schema"),
        (_telemetry(seq=-1), "schema"),
        (_telemetry(extra="x"), "schema"),
        (_telemetry(readings=[{"device": "d", "metric": "m", "value": 1}]), "schema"),
        (_telemetry(gateway="gw-2"), "gateway_mismatch"),
        (_telemetry(site="x" * wire.MAX_PAYLOAD_BYTES), "too_large"),
    ],
)
def test_decode_rejects_with_a_reason(payload, reason):
    with pytest.raises(wire.WireError) as exc:
        wire.decode("telemetry", payload, topic_gateway="gw-1")
    assert exc.value.reason == reason


def test_every_kind_has_a_model_and_round_trips():
    samples = {
        "events": wire.Event(
            gateway="g", seq=1, device="tap-1", kind="receipt", ts=1, data={"total": 5}
        ),
        "state": wire.State(gateway="g", seq=2, status="online", ts=1, devices=[]),
        "health": wire.Health(gateway="g", seq=3, ts=1, buffer_depth=0),
        "cmd": wire.Command(id="c1", name="ping"),
        "cmd/reply": wire.CommandReply(gateway="g", seq=4, id="c1", ok=True, result="pong"),
    }
    for kind, message in samples.items():
        assert wire.decode(kind, wire.encode(message)) == message


def test_encode_refuses_oversized():
    big = wire.Event(gateway="g", seq=1, device="d", kind="k", ts=1, data={"x": "y" * 300_000})
    with pytest.raises(wire.WireError) as exc:
        wire.encode(big)
    assert exc.value.reason == "too_large"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("1s", 1), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("2d", 172800), (3, 3.0)],
)
def test_durations(text, seconds):
    assert wire.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "10", "1x", "ms", "-1s", True, None, [1]])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        wire.parse_duration(bad)


def test_format_duration():
    assert [wire.format_duration(s) for s in (0.1, 1, 90, 300, 3600)] == [
        "100ms",
        "1s",
        "90s",
        "5m",
        "1h",
    ]


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = None
    interval: wire.Duration = 1.0


class _Conf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mqtt: _Inner = _Inner()


def test_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("mqtt:\n  interval: 10x\n  colour: red\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Conf, path, environ={})
    text = str(exc.value)
    assert f"{path}: mqtt.interval: invalid duration '10x'" in text
    assert f"{path}: mqtt.colour: unknown key" in text


def test_config_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("mqtt:\n  interval: [1\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Conf, path, environ={})
    assert str(exc.value).startswith(f"{path}:3:")


def test_env_overrides_apply_to_known_keys_only(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("mqtt: {password: from-file}\n")
    env = {"PANTAU_MQTT__PASSWORD": "from-env", "PANTAU_OTHER__X": "1", "HOME": "/root"}
    assert env_overrides(_Conf, env) == {"mqtt": {"password": "from-env"}}
    assert load_model(_Conf, path, environ=env).mqtt.password == "from-env"


def test_secret_values_are_not_echoed(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("mqtt: {password: 987654321}\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Conf, path, environ={})
    assert "mqtt.password" in str(exc.value)
    assert "987654321" not in str(exc.value)


@pytest.mark.parametrize("key", ["password", "community", "auth_key", "priv_key", "token_file"])
def test_any_secret_looking_key_hides_its_value(tmp_path, key):
    class _Secretive(BaseModel):
        model_config = ConfigDict(extra="forbid")
        password: str | None = None
        community: str | None = None
        auth_key: str | None = None
        priv_key: str | None = None
        token_file: str | None = None

    path = tmp_path / "x.yaml"
    path.write_text(f"{key}: 987654321\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Secretive, path, environ={})
    assert f"{key}: Input should be a valid string (value hidden)" in str(exc.value)
    assert "987654321" not in str(exc.value)
