"""A short broker connection test for ``pantau-agent check``."""

import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import AgentConfig


def probe_broker(config: AgentConfig, timeout: float = 5.0) -> str | None:
    """None when the broker accepts our credentials, else what went wrong (no secrets)."""
    mqtt = config.mqtt
    done = threading.Event()
    result: list[str | None] = ["no answer within %gs" % timeout]
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{config.gateway.id}-check", clean_session=True
    )
    if mqtt.username:
        client.username_pw_set(mqtt.username, mqtt.secret())
    if mqtt.use_tls:
        tls = mqtt.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
            certfile=str(tls.cert_file) if tls and tls.cert_file else None,
            keyfile=str(tls.key_file) if tls and tls.key_file else None,
        )

    def on_connect(client, userdata, flags, rc, props):  # type: ignore[no-untyped-def]
        result[0] = None if not rc.is_failure else f"broker refused the connection: {rc}"
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return result[0]
