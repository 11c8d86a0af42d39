"""central._mqttsock against a real mosquitto: the buffered client receives every
message, and ``ack_many`` acknowledges exactly the messages it names (the broker
sends the others again when the persistent session resumes)."""

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from central._mqttsock import BufferedClient, BufferedSocket
from scripts.services import Mosquitto


class _Receiver:
    def __init__(self, broker: Mosquitto, client_id: str, topic: str) -> None:
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        self.got: dict[bytes, int] = {}  # payload -> packet id
        self.subscribed = threading.Event()
        self.topic = topic
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        self.client.subscribe([(topic, SubscribeOptions(qos=1))])
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.got[bytes(msg.payload)] = msg.mid

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) == count, sorted(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_ack_many_acknowledges_exactly_the_named_messages(broker: Mosquitto) -> None:
    client_id = f"sock-{uuid.uuid4().hex[:10]}"
    topic = f"test/{client_id}"
    receiver = _Receiver(broker, client_id, topic)
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        assert receiver.subscribed.wait(10)
        sent = [f"m{i}".encode() * (i + 1) for i in range(40)]
        for payload in sent:
            publisher.publish(topic, payload, qos=1).wait_for_publish(10)
        receiver.wait_for(len(sent))
        assert isinstance(receiver.client.socket(), BufferedSocket)
        acked = sent[::2]
        receiver.client.ack_many(receiver.got[p] for p in acked)
        receiver.client.ack_many([])  # nothing to send: no packet at all
        time.sleep(0.5)  # the broker has the acknowledgements before we leave
        receiver.close()

        again = _Receiver(broker, client_id, topic)  # the session resumes
        try:
            again.wait_for(len(sent) - len(acked))
            assert sorted(again.got) == sorted(sent[1::2])
            again.client.ack_many(again.got.values())
        finally:
            time.sleep(0.3)
            again.close()
    finally:
        publisher.disconnect()
        publisher.loop_stop()


# the QoS 1 fast path: packets parsed by BufferedSocket.take_qos1_publish


class _Bytes:
    """A socket that has ``data`` to read, then would block."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        out, self.data = self.data[:n], self.data[n:]
        return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(
    topic: bytes, payload: bytes, mid: int, *, first: int = 0x32, props: bytes = b""
) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    if props is not None:
        body += _varint(len(props)) + props
    body += payload
    return bytes([first]) + _varint(len(body)) + body


def test_take_qos1_publish_parses_mqtt5_and_311_packets() -> None:
    user_prop = b"\x26" + b"\x00\x01k" + b"\x00\x01v"  # a user property, skipped
    stream = (
        _publish(b"a/b", b"one", 1)
        + _publish(b"a/c", b"two" * 100, 65535, first=0x3B, props=user_prop)  # DUP, RETAIN
        + _publish(b"a/d", b"x" * 20000, 7)  # a 3-byte remaining length
    )
    sock = BufferedSocket(_Bytes(stream))
    assert sock.fill() == len(stream)
    assert sock.take_qos1_publish(True) == (b"a/b", b"one", 1)
    assert sock.take_qos1_publish(True) == (b"a/c", b"two" * 100, 65535)
    assert sock.take_qos1_publish(True) == (b"a/d", b"x" * 20000, 7)
    assert sock.take_qos1_publish(True) is None
    assert sock.pending() == 0

    v311 = BufferedSocket(_Bytes(_publish(b"t", b"\x00\x01payload", 9, props=None)))
    v311.fill()
    assert v311.take_qos1_publish(False) == (b"t", b"\x00\x01payload", 9)


@pytest.mark.parametrize(
    "packet",
    [
        _publish(b"t", b"qos0", 0, first=0x30)[:3] + b"qos0",  # QoS 0: no packet id
        _publish(b"t", b"qos2", 3, first=0x34),
        bytes([0x90, 3, 0, 1, 1]),  # SUBACK
        bytes([0xD0, 0]),  # PINGRESP
        _publish(b"t", b"cut short", 5)[:-1],  # not wholly received yet
        bytes([0x32, 0x80, 0x80, 0x80, 0x80, 0x01]),  # a remaining length of 5 bytes
    ],
)
def test_take_qos1_publish_leaves_everything_else_to_paho(packet: bytes) -> None:
    sock = BufferedSocket(_Bytes(packet))
    sock.fill()
    assert sock.take_qos1_publish(True) is None
    assert sock.pending() == len(packet)  # nothing consumed
    assert sock.recv(len(packet)) == packet


class _FastReceiver:
    """A BufferedClient with ``on_qos1`` and paho's own acknowledgements (no manual_ack)."""

    def __init__(self, broker: Mosquitto, client_id: str, topic: str) -> None:
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.got: list[tuple[str, bytes, int]] = []  # (topic, payload, QoS)
        self.fast = 0  # how many came by the fast path
        self.subscribed = threading.Event()
        self.client.on_qos1 = self._fast
        # the rest: QoS 0 and 2, and a QoS 1 packet the buffer holds only part of
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload), m.qos))
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 60
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        self.client.subscribe([(topic, SubscribeOptions(qos=2))])
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _fast(self, topic: str, payload: bytes, mid: int) -> None:
        self.got.append((topic, payload, 1))
        self.fast += 1

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.got) == count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_fast_path_receives_and_acknowledges_every_qos1_message(broker: Mosquitto) -> None:
    client_id = f"fast-{uuid.uuid4().hex[:10]}"
    topic = f"test/{client_id}"
    receiver = _FastReceiver(broker, client_id, f"{topic}/#")
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("source", "test")  # forwarded by the broker, skipped by us
        sent = [(f"{topic}/{i}", f"m{i}-".encode() * (i * 37 % 3000 + 1)) for i in range(600)]
        infos = [publisher.publish(t, p, qos=1, properties=props) for t, p in sent]
        for info in infos:
            info.wait_for_publish(10)
        publisher.publish(f"{topic}/q0", b"zero", qos=0).wait_for_publish(10)
        publisher.publish(f"{topic}/q2", b"two", qos=2).wait_for_publish(10)
        receiver.wait_for(len(sent) + 2)
        assert receiver.got[: len(sent)] == [(t, p, 1) for t, p in sent]  # in order, exact
        assert receiver.got[len(sent) :] == [
            (f"{topic}/q0", b"zero", 0),
            (f"{topic}/q2", b"two", 2),
        ]
        assert receiver.fast >= len(sent) * 0.9  # all but packets cut at a read's end
        time.sleep(0.3)  # the last acknowledgements reach the broker
        receiver.close()

        again = _FastReceiver(broker, client_id, f"{topic}/#")  # resumed: nothing owed
        try:
            time.sleep(0.5)
            assert again.got == []
        finally:
            again.close()
    finally:
        publisher.disconnect()
        publisher.loop_stop()
