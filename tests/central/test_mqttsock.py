"""central._mqttsock against a real mosquitto: the buffered client receives every
message, and ``ack_many`` acknowledges exactly the messages it names (the broker
sends the others again when the persistent session resumes)."""

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as paho
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
