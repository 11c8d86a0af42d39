"""Commands to gateways: published on ``pantau/v1/<gw>/cmd`` with central's own broker
identity, answered on ``cmd/reply`` (which ingest already receives).

:meth:`Commands.send` blocks its caller (an API request's worker thread) until the reply
with the same ``id`` arrives or the timeout passes. Replies nobody waits for (a late
one, one for a command an operator sent by hand) are only logged.
"""

import logging
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho

import wire

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """The command could not be delivered or was not answered; ``status`` is the HTTP
    status the API answers with (503 broker not connected, 504 no reply)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Commands:
    def __init__(self, client: paho.Client, connected: threading.Event) -> None:
        self.client = client
        self.connected = connected
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, str], tuple[threading.Event, list[wire.CommandReply]]] = {}

    def observe(self, kind: str, message: Any) -> None:
        """Ingest's observer: hands each ``cmd/reply`` to whoever waits for it."""
        if kind != "cmd/reply":
            return
        with self._lock:
            waiter = self._waiting.get((message.gateway, message.id))
        if waiter is None:
            log.info("reply %s from %s that nobody waits for", message.id, message.gateway)
            return
        waiter[1].append(message)
        waiter[0].set()

    def send(
        self, gateway: str, name: str, args: dict[str, Any], timeout: float = 30.0
    ) -> wire.CommandReply:
        """Publish the command and wait for its reply; raises CommandFailed."""
        if not self.connected.is_set():
            raise CommandFailed("central is not connected to the broker", 503)
        command_id = f"{name}-{uuid.uuid4().hex[:12]}"
        try:
            payload = wire.encode(wire.Command(id=command_id, name=name, args=args))
        except wire.WireError as exc:
            raise CommandFailed(f"the command is too large: {exc.detail}", 413) from None
        done = threading.Event()
        replies: list[wire.CommandReply] = []
        key = (gateway, command_id)
        with self._lock:
            self._waiting[key] = (done, replies)
        try:
            info = self.client.publish(wire.topic(gateway, "cmd"), payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise CommandFailed(
                    f"the broker did not take the command: {paho.error_string(info.rc)}", 503
                )
            if not done.wait(timeout):
                raise CommandFailed(
                    f"{gateway} did not answer {name} ({command_id}) within {timeout:g}s: "
                    "is it online?",
                    504,
                )
            return replies[0]
        finally:
            with self._lock:
                self._waiting.pop(key, None)
