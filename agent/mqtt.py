"""The agent's MQTT session: paho-mqtt 2.x underneath, asyncio on top.

paho keeps every QoS 1 message it has accepted until the broker's PUBACK, and
sends it again after a reconnect (with the DUP flag); ``on_acked`` is called (in
the event loop) with the message's token once the PUBACK arrives. The caller
bounds how many messages are in flight (``mqtt.window``), far below paho's
65,535 message ids, so a wrapped id never meets a message still held.

We own the reconnect loop (one network thread): after a lost or refused
connection it waits ``backoff_delay`` — exponential from ``mqtt.reconnect_min``
to ``mqtt.reconnect_max`` with jitter, so a city's gateways coming back after a
broker restart do not all knock at once — then reconnects.
"""

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection
from wire.broker import login
from wire.retry import Backoff

log = logging.getLogger(__name__)


def backoff_delay(
    attempt: int, low: float, high: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): ``low·2^attempt`` capped at
    ``high``, then scaled into its upper half at random (:class:`wire.retry.Backoff`)."""
    return Backoff(low, high).delay(attempt, rand)


class MqttSession:
    def __init__(
        self,
        config: MqttSection,
        client_id: str,
        loop: asyncio.AbstractEventLoop,
        *,
        will: tuple[str, bytes],
        on_connect: Callable[[], None],
        on_acked: Callable[[Any], None],
        on_command: Callable[[str, bytes], None] | None = None,
        command_topic: str | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.connected = asyncio.Event()
        self.connects = 0  # successful connections so far
        self._on_connect = on_connect
        self._on_acked = on_acked
        self._on_command = on_command
        self._command_topic = command_topic
        self._tokens: dict[int, Any] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempt = 0
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        login(client, config)
        client.will_set(will[0], will[1], qos=1, retain=True)
        client.max_inflight_messages_set(config.window)
        client.max_queued_messages_set(0)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        client.on_message = self._message
        self.client = client

    # lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._network, name="mqtt", daemon=True)
        self._thread.start()

    def _network(self) -> None:
        client = self.client
        first = True
        while not self._closing.is_set():
            try:
                if first:
                    client.connect(self.config.host, self.config.port, round(self.config.keepalive))
                else:
                    client.reconnect()
                first = False
                rc = paho.MQTT_ERR_SUCCESS
                while rc == paho.MQTT_ERR_SUCCESS and not self._closing.is_set():
                    rc = client.loop(timeout=0.5)
            except (OSError, ssl.SSLError, ValueError) as exc:
                if self._attempt == 0 or log.isEnabledFor(logging.DEBUG):
                    log.warning("cannot connect to %s: %s", self.config.url, exc)
            except Exception:  # never let the network thread die
                log.exception("MQTT network loop failed")
            if self._closing.is_set():
                break
            delay = backoff_delay(
                self._attempt, self.config.reconnect_min, self.config.reconnect_max
            )
            self._attempt += 1
            log.debug("reconnecting to %s in %.1fs", self.config.url, delay)
            self._closing.wait(delay)

    async def stop(self, last_words: tuple[str, bytes] | None = None, wait: float = 5) -> None:
        """Publish ``last_words`` (retained) if connected, disconnect cleanly, end the thread."""
        if last_words is not None and self.connected.is_set():
            info = self.client.publish(last_words[0], last_words[1], qos=1, retain=True)
            try:
                await asyncio.to_thread(info.wait_for_publish, wait)
            except (RuntimeError, ValueError):
                pass
        self._closing.set()
        self.client.disconnect()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, wait)

    def publish(self, topic: str, payload: bytes, token: Any = None, retain: bool = False) -> bool:
        """Hand a QoS 1 message to paho; ``on_acked(token)`` follows its PUBACK.

        False when paho refused it (its message id is still held): try again later.
        """
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.warning("paho refused a message: %s", paho.error_string(info.rc))
            return False
        if token is not None:
            self._tokens[info.mid] = token
        return True

    @property
    def in_flight(self) -> int:
        """Messages with a token handed to paho and not yet acknowledged."""
        return len(self._tokens)

    # paho callbacks: run in the network thread, hand over to the event loop

    def _connected(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.warning("broker %s refused the connection: %s", self.config.url, rc)
            return
        self._attempt = 0
        log.info("connected to %s", self.config.url)
        if self._command_topic is not None:
            client.subscribe(self._command_topic, qos=1)
        self.loop.call_soon_threadsafe(self._set_connected)

    def _set_connected(self) -> None:
        self.connects += 1
        self.connected.set()
        self._on_connect()

    def _disconnected(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not self._closing.is_set():
            log.warning(
                "disconnected from %s: %s; %d messages held for re-sending",
                self.config.url,
                rc,
                len(self._tokens),
            )
        self.loop.call_soon_threadsafe(self.connected.clear)

    def _published(self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.loop.call_soon_threadsafe(self._acked, mid)

    def _acked(self, mid: int) -> None:
        token = self._tokens.pop(mid, None)
        if token is not None:
            self._on_acked(token)

    def _message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._on_command is not None:
            self.loop.call_soon_threadsafe(self._on_command, message.topic, bytes(message.payload))
