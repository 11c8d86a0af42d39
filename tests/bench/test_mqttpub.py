"""bench/_mqttpub: the benchmarks' lean QoS 1 publishers, against a real mosquitto."""

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench import central_ingest
from bench._mqttpub import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    Fleet,
    Message,
    MqttError,
    Packet,
    PacketIds,
    PacketReader,
    Subscriber,
    connack_code,
    connect_packet,
    encode_length,
    parse_publish,
    puback_id,
    puback_packet,
    publish_packet,
    suback_codes,
    subscribe_packet,
)
from scripts.services import Mosquitto, free_port


class PahoSubscriber:
    """A paho client at QoS 1 keeping every message it gets, in order, per topic."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.got: dict[str, list[bytes]] = {}
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert subscribed.wait(10), "subscriber did not subscribe"

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        assert message.qos == 1
        with self.cond:
            self.got.setdefault(message.topic, []).append(message.payload)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> dict[str, list[bytes]]:
        with self.cond:
            self.cond.wait_for(lambda: sum(map(len, self.got.values())) >= count, timeout)
        time.sleep(0.2)  # anything beyond count (a duplicate) arrives too
        return self.got

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe(broker: Mosquitto) -> Iterator:
    started: list[PahoSubscriber] = []

    def _subscribe(*topics: str) -> PahoSubscriber:
        started.append(PahoSubscriber(broker.port, list(topics)))
        return started[-1]

    yield _subscribe
    for sub in started:
        sub.stop()


class ScriptedBroker:
    """A loopback peer speaking just enough MQTT to test what a real broker never does:
    it answers CONNECT, then each PUBLISH with ``reply(packet id)``, one byte per TCP
    segment (so every answer arrives split)."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = PacketReader()
        with conn:
            while data := conn.recv(65536):
                for packet in reader.feed(data):
                    if packet.kind == 1:
                        answer = b"\x20\x02\x00\x00"
                    elif packet.kind == 3:
                        answer = self.reply(parse_publish(packet).packet_id)
                    else:
                        return  # DISCONNECT
                    for i in range(len(answer)):
                        conn.sendall(answer[i : i + 1])
                        time.sleep(0.002)

    def stop(self) -> None:
        self.server.close()
        self.thread.join(5)


# the codec


def test_remaining_length_uses_one_to_four_bytes_as_the_spec_tabulates() -> None:
    assert encode_length(0) == b"\x00"
    assert encode_length(127) == b"\x7f"
    assert encode_length(128) == b"\x80\x01"
    assert encode_length(16_383) == b"\xff\x7f"
    assert encode_length(16_384) == b"\x80\x80\x01"
    assert encode_length(2_097_152) == b"\x80\x80\x80\x01"
    assert encode_length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="out of range"):
        encode_length(268_435_456)


def test_connect_and_publish_packets_are_byte_exact() -> None:
    assert connect_packet("bench-gw", 30) == (
        b"\x10\x14\x00\x04MQTT\x04\x02\x00\x1e\x00\x08bench-gw"
    )
    assert publish_packet(b"a/b", b"hi", 65535) == b"\x32\x09\x00\x03a/b\xff\xffhi"
    with pytest.raises(ValueError, match="packet id 0"):
        publish_packet(b"a/b", b"hi", 0)


def test_reader_finds_every_packet_when_fed_one_byte_at_a_time() -> None:
    big = bytes(range(256)) * 2  # 512 bytes: a two-byte remaining length
    stream = (
        b"\x20\x02\x00\x00"  # CONNACK accepted
        + b"\x40\x02\xff\xfe"  # PUBACK 65534
        + b"\x40\x02\xff\xff"  # PUBACK 65535
        + b"\x40\x02\x00\x01"  # PUBACK 1
        + b"\xd0\x00"  # PINGRESP
        + publish_packet(b"t", big, 7)
    )
    expected = [
        Packet(2, 0, b"\x00\x00"),
        Packet(4, 0, b"\xff\xfe"),
        Packet(4, 0, b"\xff\xff"),
        Packet(4, 0, b"\x00\x01"),
        Packet(13, 0, b""),
        Packet(3, 2, b"\x00\x01t\x00\x07" + big),
    ]
    reader = PacketReader()
    got = [p for i in range(len(stream)) for p in reader.feed(stream[i : i + 1])]
    assert got == expected
    assert reader.pending == 0
    assert PacketReader().feed(stream) == expected  # all in one recv
    halves = PacketReader()
    assert halves.feed(stream[:7]) == expected[:1]
    assert halves.pending == 3
    assert halves.feed(stream[7:]) == expected[1:]
    assert [puback_id(p) for p in got[1:4]] == [65534, 65535, 1]
    assert connack_code(got[0]) == 0


def test_reader_and_parsers_refuse_malformed_packets() -> None:
    with pytest.raises(MqttError, match="more than 4 bytes"):
        PacketReader().feed(b"\x40\xff\xff\xff\xff\x01")
    with pytest.raises(MqttError, match="malformed PUBACK"):
        puback_id(Packet(4, 0, b"\x00\x01\x02"))
    with pytest.raises(MqttError, match=r"malformed SUBACK.*expected PUBACK"):
        puback_id(Packet(9, 0, b"\x00\x01"))


def test_packet_ids_wrap_after_65535_and_skip_ids_still_unacknowledged() -> None:
    ids = PacketIds(first=65_533)
    taken = [ids.take() for _ in range(4)]
    assert taken == [65_533, 65_534, 65_535, 1]
    ids.release(65_534)
    ids.release(1)
    ids.next = 65_533  # as if it went round once more: 65533 and 65535 are still in flight
    assert [ids.take(), ids.take(), ids.take()] == [65_534, 1, 2]
    with pytest.raises(MqttError, match="packet id 9, which is not in flight"):
        ids.release(9)


# against mosquitto


def test_every_message_arrives_once_and_intact_across_the_packet_id_wrap(
    broker: Mosquitto, subscribe: Any, gateway_id: str
) -> None:
    gateways = [f"{gateway_id}-{i}" for i in range(3)]
    sub = subscribe(*(f"pantau/v1/{gw}/telemetry" for gw in gateways))
    sizes = [0, 1, 100, 127, 128, 5_000, 16_384, 70_000]  # every remaining-length width
    sent: dict[str, list[bytes]] = {f"pantau/v1/{gw}/telemetry": [] for gw in gateways}
    with Fleet(broker.port, gateways, window=4, first_id=65_530) as fleet:
        fleet.connect()
        for n in range(40):
            for g, gw in enumerate(gateways):
                body = f"{gw}:{n}:".encode() + bytes([g + n & 0xFF]) * sizes[n % len(sizes)]
                fleet.publish(gw, body)
                sent[f"pantau/v1/{gw}/telemetry"].append(body)
                assert len(fleet.conns[gw].ids.unacked) <= 4
        fleet.drain(10)
        assert [c.ids.next for c in fleet.conns.values()] == [35, 35, 35]  # wrapped once
        assert [c.acked for c in fleet.conns.values()] == [40, 40, 40]
        fleet.close()
    assert sub.wait_for(120) == sent


def test_a_quiet_connection_pings_and_stays_up(broker: Mosquitto, gateway_id: str) -> None:
    with Fleet(broker.port, [gateway_id], keepalive=1) as fleet:
        fleet.connect()
        end = time.monotonic() + 2.5  # mosquitto drops a silent client after 1.5 s
        while (now := time.monotonic()) < end:
            fleet.poll(end - now)
        assert fleet.conns[gateway_id].pings >= 2
        fleet.publish(gateway_id, b"still here")
        fleet.drain(5)
        fleet.close()


def test_a_refused_connect_fails_loudly(make_broker: Any, gateway_id: str) -> None:
    locked = make_broker(anonymous=False)
    with Fleet(locked.port, [gateway_id]) as fleet, pytest.raises(MqttError) as err:
        fleet.connect(5)
    assert str(err.value) == (
        f"bench-{gateway_id}: the broker refused CONNECT: not authorized (return code 5) "
        "(0 messages unacknowledged)"
    )


def test_a_broker_that_goes_away_fails_loudly(make_broker: Any, gateway_id: str) -> None:
    server = make_broker()
    with Fleet(server.port, [gateway_id], window=2) as fleet:
        fleet.connect()
        fleet.publish(gateway_id, b"one")
        fleet.drain(5)
        server.stop()
        with pytest.raises(MqttError, match=f"bench-{gateway_id}: .*(closed|failed)"):
            for _ in range(100):  # the window (2) fills, then the close is seen
                fleet.publish(gateway_id, b"more")
                fleet.poll(0.05)


def test_the_ingest_benchmarks_publisher_sends_the_paced_agent_payloads(
    broker: Mosquitto, subscribe: Any, gateway_id: str
) -> None:
    class Out(list):
        put = list.append

    gateways = [f"{gateway_id}-a", f"{gateway_id}-b"]
    sub = subscribe(*(f"pantau/v1/{gw}/telemetry" for gw in gateways))
    out = Out()
    start_at = time.monotonic() + 0.5
    central_ingest._publisher(broker.port, gateways, 4000.0, 0.5, start_at, 1000, 20, out)
    [result] = out
    assert "error" not in result, result
    assert result["sent"] == {gateways[0]: 1000, gateways[1]: 1000}  # 4,000/s for 0.5 s
    assert result["behind"] < 0.5  # seconds late at worst (a loaded machine)
    expected = {
        f"pantau/v1/{gw}/telemetry": [
            central_ingest._payload(gw, seq, 1000, (seq - 1) * 20, 20) for seq in range(1, 51)
        ]
        for gw in gateways
    }
    assert sub.wait_for(100) == expected


def test_the_ingest_benchmarks_publisher_reports_its_failure(
    make_broker: Any, gateway_id: str
) -> None:
    class Out(list):
        put = list.append

    locked = make_broker(anonymous=False)
    out = Out()
    central_ingest._publisher(locked.port, [gateway_id], None, 0.2, 0.0, 0, 20, out)
    assert out == [
        {
            "error": f"MqttError: bench-{gateway_id}: the broker refused CONNECT: "
            "not authorized (return code 5) (0 messages unacknowledged)"
        }
    ]


def test_subscriber_packets_are_byte_exact_and_publishes_parse_at_qos_0_and_1() -> None:
    assert PINGREQ_PACKET == b"\xc0\x00"
    assert DISCONNECT_PACKET == b"\xe0\x00"
    assert connect_packet("s", 10, clean=False) == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x0a\x00\x01s"
    assert subscribe_packet(b"a/+", 1) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert puback_packet(258) == b"\x40\x02\x01\x02"
    assert suback_codes(Packet(9, 0, b"\x00\x01\x80")) == (1, [0x80])
    [qos1, qos0] = PacketReader().feed(
        publish_packet(b"a/b", b"x" * 300, 513) + b"\x30\x07\x00\x01tdata"
    )
    assert parse_publish(qos1) == Message(b"a/b", b"x" * 300, 1, 513, False)
    assert parse_publish(qos0) == Message(b"t", b"data", 0, None, False)
    with pytest.raises(MqttError, match="unexpected PUBACK"):
        parse_publish(Packet(4, 0, b"\x00\x01"))
    with pytest.raises(MqttError, match="no packet id"):
        parse_publish(Packet(3, 2, b"\x00\x01t\x00"))


def test_subscriber_gets_every_message_once_and_acknowledges_it(
    broker: Mosquitto, gateway_id: str
) -> None:
    gateways = ["a", "b", "c"]
    sent: dict[bytes, list[bytes]] = {f"bench/{gateway_id}/{gw}".encode(): [] for gw in gateways}
    cid = f"sub-{gateway_id}"
    with Subscriber(broker.port, cid, clean=False) as sub:
        assert sub.connect() is False
        sub.subscribe(f"bench/{gateway_id}/+")
        with Fleet(broker.port, gateways, topic=f"bench/{gateway_id}/{{}}", window=8) as fleet:
            fleet.connect()
            for n in range(30):
                for gw in gateways:
                    body = f"{gw}:{n}:".encode() + b"." * (n * 97)
                    fleet.publish(gw, body)
                    sent[f"bench/{gateway_id}/{gw}".encode()].append(body)
            fleet.drain(10)
            fleet.close()
        got: dict[bytes, list[bytes]] = {}
        deadline = time.monotonic() + 10
        while sum(map(len, got.values())) < 90 and time.monotonic() < deadline:
            for m in sub.receive(0.5):
                assert (m.qos, m.dup) == (1, False)
                got.setdefault(m.topic, []).append(m.payload)
        assert got == sent
        sub.close()
    # the broker kept the session: anything not acknowledged would come again now
    with Subscriber(broker.port, cid, clean=False) as again:
        assert again.connect() is True
        assert again.receive(0.5) == []
        again.close()
    with Subscriber(broker.port, cid) as gone:  # clean session: drop the kept one
        gone.connect()
        gone.close()


def test_subscriber_refused_or_dropped_fails_loudly(make_broker: Any, gateway_id: str) -> None:
    locked = make_broker(anonymous=False)
    with (
        Subscriber(locked.port, gateway_id) as sub,
        pytest.raises(MqttError, match="refused CONNECT: not authorized"),
    ):
        sub.connect(5)
    server = make_broker()
    with Subscriber(server.port, gateway_id) as sub:
        sub.connect()
        sub.subscribe("x/#")
        server.stop()
        with pytest.raises(MqttError, match=f"{gateway_id}: the broker closed the connection"):
            sub.receive(5)


def test_pubacks_split_into_single_bytes_on_the_wire_are_all_read() -> None:
    peer = ScriptedBroker(puback_packet)
    try:
        with Fleet(peer.port, ["gw"], window=3, first_id=65_534) as fleet:
            fleet.connect(5)
            ids = [fleet.publish("gw", b"m%d" % n) for n in range(12)]
            fleet.drain(10)
            assert ids == [65_534, 65_535, *range(1, 11)]
            assert fleet.conns["gw"].acked == 12
            fleet.close()
    finally:
        peer.stop()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (lambda pid: puback_packet(pid + 7), "PUBACK for packet id 8, which is not in flight"),
        (lambda pid: b"\x90\x03\x00\x01\x01", "unexpected SUBACK from the broker (connected)"),
        (lambda pid: b"\x40\x03\x00\x01\x00", "malformed PUBACK: flags 0x0, 3 bytes"),
    ],
)
def test_a_broker_answering_nonsense_fails_loudly_naming_the_gateway(
    reply: Any, error: str
) -> None:
    peer = ScriptedBroker(reply)
    try:
        with Fleet(peer.port, ["gw"], window=3) as fleet:
            fleet.connect(5)
            fleet.publish("gw", b"m")
            with pytest.raises(MqttError) as err:
                fleet.drain(5)
            assert str(err.value).startswith(f"bench-gw: {error}")
    finally:
        peer.stop()
