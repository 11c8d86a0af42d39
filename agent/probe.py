"""A short broker connection test for ``pantau-agent check``."""

import ssl
import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import AgentConfig
from agent.mqtt import configure_tls


def probe_broker(config: AgentConfig, timeout: float = 5.0) -> str | None:
    """None when the broker accepts our credentials, else what went wrong (no secrets)."""
    mqtt = config.mqtt
    done = threading.Event()
    result: list[str | None] = [f"no answer within {timeout:g}s"]
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{config.gateway.id}-check", clean_session=True
    )
    if mqtt.username:
        client.username_pw_set(mqtt.username, mqtt.secret())
    try:
        configure_tls(client, mqtt)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"TLS files unusable: {exc}"

    def on_connect(client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result[0] = None if not rc.is_failure else f"broker refused the connection: {rc}"
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
    except ssl.SSLCertVerificationError as exc:
        return f"TLS handshake failed: certificate verify failed: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return result[0]
