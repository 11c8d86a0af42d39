"""Tiny synchronous paho clients for checking what the broker allows."""

import queue
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Client:
    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        tls: tuple[Path, Path | None, Path | None] | None = None,
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.reason: str | None = None
        self.granted: list[int] = []
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if username:
            c.username_pw_set(username, password)
        if tls:
            ca, cert, key = tls
            c.tls_set(
                ca_certs=str(ca),
                certfile=cert and str(cert),
                keyfile=key and str(key),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        c.on_subscribe = self._on_subscribe
        self.client = c
        self.port = port

    def _on_connect(self, _c, _u, _f, rc, _p) -> None:
        self.reason = str(rc)
        self.ok = not rc.is_failure
        self.connected.set()

    def _on_disconnect(self, _c, _u, _f, rc, _p) -> None:
        # dropped before any CONNACK (a refused client certificate): a refusal, at once
        if not self.connected.is_set():
            self.reason = str(rc)
            self.ok = False
            self.connected.set()

    def _on_subscribe(self, _c, _u, _mid, codes, _p) -> None:
        self.granted = [getattr(c, "value", c) for c in codes]
        self.subscribed.set()

    def connect(self, timeout: float = 5.0) -> bool:
        try:
            self.client.connect("127.0.0.1", self.port)
        except OSError:
            return False
        self.client.loop_start()
        # no CONNACK (e.g. the TLS session was closed) or a refusal: stop paho's thread
        if not self.connected.wait(timeout) or not self.ok:
            self.close()
            return False
        return True

    def subscribe(self, topic: str) -> list[int]:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def expect(self, timeout: float = 3.0) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout)

    def nothing(self, timeout: float = 0.5) -> bool:
        try:
            self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
