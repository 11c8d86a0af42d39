"""The wire contract: topics, models, encoding limits, durations, config errors."""

import json
from pathlib import Path

import msgspec
import pytest

import wire
from wire.configfile import ConfigError, env_overrides, load_model
from wire.structs import Secret, Section, convert, dump, problems
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


@pytest.mark.parametrize(
    ("reading", "where"),
    [
        ({"device": "d\n1", "metric": "m"}, "readings.0.device"),
        ({"device": "d1", "metric": "m\u0001"}, "readings.0.metric"),
        ({"device": "d1", "metric": "m\t"}, "readings.0.metric"),
    ],
)
def test_control_characters_in_reading_names_are_refused(reading, where):
    # JSON carries a control character only as an escape (json.dumps writes "\n")
    payload = _telemetry(readings=[{**reading, "value": 1, "ts": 1}])
    assert b"\\" in payload
    with pytest.raises(wire.WireError) as exc:
        wire.decode("telemetry", payload, topic_gateway="gw-1")
    assert exc.value.reason == "schema"
    assert exc.value.detail == f"{where}: control characters are not allowed"


def test_raw_control_characters_are_not_json():
    payload = _telemetry().replace(b'"d1"', b'"d\x011"')
    assert b"\x01" in payload
    with pytest.raises(wire.WireError) as exc:
        wire.decode("telemetry", payload, topic_gateway="gw-1")
    assert exc.value.reason == "bad_json"


def test_escapes_elsewhere_in_a_batch_are_fine():
    payload = _telemetry(
        site='a\\b "c"', readings=[{"device": "d\\1", "metric": "m", "value": 1, "ts": 1}]
    )
    message = wire.decode("telemetry", payload, topic_gateway="gw-1")
    assert message.site == 'a\\b "c"'
    assert message.readings[0].device == "d\\1"


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


class _Inner(Section):
    password: str | None = None
    interval: wire.Duration = wire.Duration(1.0)
    count: int = 1


class _Conf(Section):
    mqtt: _Inner = msgspec.field(default_factory=_Inner)
    hosts: list[str] = []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "mqtt:\n  interval: 10x\n",
            "mqtt.interval: invalid duration '10x': expected e.g. 100ms, 1s, 5m, 1h",
        ),
        ("mqtt:\n  colour: red\n", "mqtt.colour: unknown key"),
        ("mqtt:\n  count: 1.5\n", "mqtt.count: Expected `int`, got `float` (got 1.5)"),
        ("hosts: [a, 7]\n", "hosts[1]: Expected `str`, got `int` (got 7)"),
        ("mqtt: 5\n", "mqtt: Expected `object`, got `int` (got 5)"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, line):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_model(_Conf, path, environ={})
    assert str(exc.value) == f"{path}: {line}"


def test_numbers_from_the_environment_are_numbers(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("{}\n")
    config = load_model(_Conf, path, environ={"PANTAU_MQTT__COUNT": "7"})
    assert config.mqtt.count == 7


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    class _Files(Section):
        ca_file: Path
        key_file: Path | None = None

    config = convert({"ca_file": "ca.pem", "key_file": "/etc/k.pem"}, _Files, base_dir=tmp_path)
    assert config.ca_file == tmp_path / "ca.pem"
    assert config.key_file == Path("/etc/k.pem")


def test_dump_writes_durations_paths_and_hides_secrets():
    class _All(Section):
        every: wire.Duration = wire.Duration(90.0)
        path: Path = Path("/var/lib/x")
        password: Secret | None = None

    data = dump(convert({"password": "hunter2"}, _All))
    assert data == {"every": "90s", "path": "/var/lib/x", "password": "**redacted**"}
    assert "hunter2" not in repr(convert({"password": "hunter2"}, _All))


def test_a_rule_across_keys_is_reported_at_its_section():
    class _Pair(Section):
        cert_file: str | None = None
        key_file: str | None = None

        def __post_init__(self) -> None:
            if (self.cert_file is None) != (self.key_file is None):
                raise ValueError("cert_file and key_file go together")

    class _Top(Section):
        tls: _Pair

    data = {"tls": {"cert_file": "c.pem"}}
    with pytest.raises(msgspec.ValidationError) as exc:
        convert(data, _Top)
    assert problems("x.yaml", exc.value, data) == [
        "x.yaml: tls: cert_file and key_file go together"
    ]


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
    assert load_model(_Conf, path, environ={}).mqtt.password == "from-file"


def test_secret_values_are_not_echoed(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("mqtt: {password: 987654321}\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Conf, path, environ={})
    assert "mqtt.password" in str(exc.value)
    assert "987654321" not in str(exc.value)


@pytest.mark.parametrize("key", ["password", "community", "auth_key", "priv_key", "token_file"])
def test_any_secret_looking_key_hides_its_value(tmp_path, key):
    class _Secretive(Section):
        password: str | None = None
        community: str | None = None
        auth_key: str | None = None
        priv_key: str | None = None
        token_file: str | None = None

    path = tmp_path / "x.yaml"
    path.write_text(f"{key}: 987654321\n")
    with pytest.raises(ConfigError) as exc:
        load_model(_Secretive, path, environ={})
    assert f"{key}: Expected `str | null`, got `int` (value hidden)" in str(exc.value)
    assert "987654321" not in str(exc.value)


def test_config_typed_values_go_out_as_plain_json():
    class GatewayId(str):
        pass

    info = wire.DeviceInfo(id="d1", profile="p", driver="modbus", interval=wire.Duration(0.1))
    state = wire.State(gateway=GatewayId("gw-1"), seq=1, status="online", ts=5, devices=[info])
    doc = json.loads(wire.encode(state))
    assert doc["gateway"] == "gw-1"
    assert doc["devices"][0]["interval"] == 0.1
    assert "reason" not in doc  # None is left out
    assert wire.decode("state", wire.encode(state)) == state


def test_the_fast_telemetry_encoder_writes_what_decode_reads() -> None:
    readings = [
        wire.encode_reading("river-1", "level_cm", 312.5, 1_700_000_000_000, "good", unit="cm"),
        wire.encode_reading(
            "river-1", "rain_mm", None, 1_700_000_000_500, "bad", error='timeout "x"'
        ),
    ]
    payload = wire.encode_telemetry("gw-7", 42, "kota \u00e9", readings)
    assert wire.decode("telemetry", payload, topic_gateway="gw-7") == wire.Telemetry(
        gateway="gw-7",
        seq=42,
        site="kota \u00e9",
        readings=[
            wire.Reading(
                device="river-1", metric="level_cm", value=312.5, ts=1_700_000_000_000,
                quality="good", unit="cm",
            ),
            wire.Reading(
                device="river-1", metric="rain_mm", value=None, ts=1_700_000_000_500,
                quality="bad", error='timeout "x"',
            ),
        ],
    )  # fmt: skip
    no_site = wire.decode("telemetry", wire.encode_telemetry("gw-7", 1, None, readings[:1]))
    assert no_site.site is None and len(no_site.readings) == 1


def test_the_fast_event_encoder_writes_what_decode_reads() -> None:
    body = wire.encode_event_body(
        "kota-a", "till-1", "receipt", ts=1_700_000_000_000, data={"total": "12500.00"}
    )
    event = wire.decode("events", wire.encode_event("gw-8", 3, body), topic_gateway="gw-8")
    assert (event.gateway, event.seq, event.site, event.kind, event.data) == (
        "gw-8",
        3,
        "kota-a",
        "receipt",
        {"total": "12500.00"},
    )


def test_the_fast_encoders_take_validated_str_subclasses() -> None:
    class Id(str):
        pass

    payload = wire.encode_telemetry(
        Id("gw-9"), 1, Id("kota"), [wire.encode_reading(Id("d"), Id("m"), 1.0, 5, "good")]
    )
    assert wire.decode("telemetry", payload).gateway == "gw-9"
    body = wire.encode_event_body(Id("kota"), Id("d"), Id("k"), ts=5, data={})
    assert wire.decode("events", wire.encode_event(Id("gw-9"), 2, body)).site == "kota"
