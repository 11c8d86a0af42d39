"""The alert leader's own view of every gateway, when several workers share the ingest.

With ``mqtt.shared_group`` the broker hands each telemetry message to ONE worker, so
the worker that evaluates alert rules sees only its share through ingest. The leader
therefore also subscribes, without the group, to everything the rules read
(telemetry, events, state, health) and evaluates that; ingest keeps writing its share.

The feed's MQTT session is persistent and named after the group
(``<shared_group>-alerts``), so when a leader dies the broker keeps what arrives
until the next leader connects with the same client id (``SESSION_EXPIRY``), and the
new leader evaluates it. Messages are acknowledged once queued for the engine: the
feed never holds readings back; InfluxDB storage stays with ingest. With broker
credentials, the feed logs in as ``<shared_group>-alerts`` (:func:`username`).
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import wire
from central._mqttsock import BufferedClient
from central.config import CentralConfig
from wire.broker import login
from wire.topics import subscription

log = logging.getLogger(__name__)

KINDS = ("telemetry", "events", "state", "health")
SESSION_EXPIRY = 300  # seconds the broker keeps the feed's queue between leaders


def client_id(config: CentralConfig) -> str:
    return f"{config.mqtt.shared_group}-alerts"


def username(config: CentralConfig) -> str | None:
    """A broker that makes each username the client id (``pantau-provision broker-config``,
    ``use_username_as_clientid``) needs the feed to log in as a user of its own:
    ``<shared_group>-alerts``, with central's password; broker-config adds
    ``pantau-central-alerts`` (the default group's) with ``--central-workers`` 2 or more."""
    return client_id(config) if config.mqtt.username else None


class Feed:
    def __init__(self, config: CentralConfig, deliver: Callable[[str, Any], None]) -> None:
        self.config = config
        self.deliver = deliver
        self.subscribed = threading.Event()
        mqtt = config.mqtt
        self.client = BufferedClient(  # one recv for a burst of messages, as ingest
            CallbackAPIVersion.VERSION2, client_id=client_id(config), protocol=paho.MQTTv5
        )
        login(self.client, msgspec.structs.replace(mqtt, username=username(config)))
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_qos1 = self._on_qos1

    def start(self) -> None:
        mqtt = self.config.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY
        props.ReceiveMaximum = 65535
        self.client.connect_async(
            mqtt.host, mqtt.port, keepalive=round(mqtt.keepalive), clean_start=False,
            properties=props,
        )  # fmt: skip
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.subscribed.clear()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the alert feed (%s): %s", client_id(self.config), rc)
            return
        client.subscribe([(subscription(kind), SubscribeOptions(qos=1)) for kind in KINDS])

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        """The broker's SUBACK: from here on it hands the feed every gateway's messages."""
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            log.error(
                "broker refused the alert feed's subscriptions (%s): %s (check the broker's ACL)",
                client_id(self.config),
                failed,
            )
            return
        self.subscribed.set()
        log.info("alert feed subscribed to every gateway as %s", client_id(self.config))

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_qos1(msg.topic, bytes(msg.payload), msg.mid)

    def _on_qos1(self, topic: str, payload: bytes, mid: int) -> None:
        parsed = wire.parse_topic(topic)
        if parsed is None:
            return
        gateway, kind = parsed
        try:
            message = wire.decode(kind, payload, topic_gateway=gateway)
        except wire.WireError:
            return  # ingest dead-letters it
        except Exception:
            log.exception("alert feed: cannot decode a message on %s", topic)
            return
        self.deliver(kind, message)
