"""The agent's MQTT session: paho-mqtt 2.x underneath, asyncio on top.

paho keeps every QoS 1 message it has accepted until the broker's PUBACK, and
sends it again after a reconnect; ``on_acked`` is called (in the event loop)
with the message's token once the PUBACK arrives. The caller bounds how many
messages are in flight (``mqtt.window``), far below paho's 65,535 message ids.
"""

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection

log = logging.getLogger(__name__)


class MqttSession:
    def __init__(
        self,
        config: MqttSection,
        client_id: str,
        loop: asyncio.AbstractEventLoop,
        will: tuple[str, bytes],
        on_connect: Callable[[], None],
        on_acked: Callable[[Any], None],
        on_command: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.connected = asyncio.Event()
        self._on_connect = on_connect
        self._on_acked = on_acked
        self._on_command = on_command
        self._tokens: dict[int, Any] = {}
        self._was_connected = False
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        if config.username:
            client.username_pw_set(config.username, config.secret())
        if config.use_tls:
            tls = config.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if tls and tls.insecure:
                client.tls_insecure_set(True)
        client.will_set(will[0], will[1], qos=1, retain=True)
        client.max_inflight_messages_set(config.window)
        client.max_queued_messages_set(0)
        self._jitter_backoff(client)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        client.on_message = self._message
        self.client = client

    def _jitter_backoff(self, client: paho.Client) -> None:
        low = self.config.reconnect_min
        client.reconnect_delay_set(
            min_delay=max(1, round(random.uniform(low, low * 2))),
            max_delay=max(1, round(self.config.reconnect_max * random.uniform(0.8, 1.0))),
        )

    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, round(self.config.keepalive))
        self.client.loop_start()

    async def stop(self, last_words: tuple[str, bytes] | None = None, timeout: float = 5) -> None:
        if last_words is not None and self.connected.is_set():
            info = self.client.publish(last_words[0], last_words[1], qos=1, retain=True)
            try:
                await asyncio.wait_for(asyncio.to_thread(info.wait_for_publish, timeout), timeout)
            except (TimeoutError, RuntimeError, ValueError):
                pass
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    def publish(self, topic: str, payload: bytes, token: Any = None, retain: bool = False) -> int:
        """Hand a QoS 1 message to paho; ``on_acked(token)`` follows its PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish refused by paho: {paho.error_string(info.rc)}")
        if token is not None:
            self._tokens[info.mid] = token
        return info.mid

    @property
    def in_flight(self) -> int:
        return len(self._tokens)

    # paho callbacks: run in paho's thread, hand over to the event loop

    def _connected(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.warning("broker %s refused the connection: %s", self.config.url, rc)
            return
        log.info("connected to %s", self.config.url)
        self._was_connected = True
        if self._on_command is not None:
            client.subscribe(f"{self._command_topic}", qos=1)
        self.loop.call_soon_threadsafe(self._set_connected)

    _command_topic = ""

    def subscribe_commands(self, topic: str) -> None:
        self._command_topic = topic

    def _set_connected(self) -> None:
        self.connected.set()
        self._on_connect()

    def _disconnected(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if self._was_connected:
            log.warning("disconnected from %s: %s; will reconnect", self.config.url, rc)
            self._was_connected = False
        self._jitter_backoff(client)
        self.loop.call_soon_threadsafe(self.connected.clear)

    def _published(self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid)

    def _acked(self, mid: int) -> None:
        token = self._tokens.pop(mid, None)
        if token is not None:
            self._on_acked(token)

    def _message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_command is not None:
            self.loop.call_soon_threadsafe(self._on_command, message.topic, message.payload)
