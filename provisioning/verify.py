"""``verify``: log in to the broker as the gateway (its own credentials, from its
bundle), publish a test birth and, with central's API, wait until central saw it.

The test birth is a valid ``wire.State`` (status online, ``reason: provisioning
verify``) on ``pantau/v1/<id>/state``, QoS 1, **not retained**: the retained slot
belongs to the running agent (its birth and its last will). A retained test message
would make a gateway that never started look online to everyone who subscribes later,
and restoring the slot afterwards would race with the agent. Central, subscribed with a
persistent session, receives a live message as well as a retained one.
"""

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

import wire
from provisioning.bundle import check_broker_url, check_bundle
from provisioning.central import Central
from provisioning.errors import ProvisionError
from wire.broker import BrokerUrl, login

CONNECT_TIMEOUT = 10.0


@dataclass
class VerifyResult:
    published_at: float
    central_seen: float | None = None


def test_birth(gateway_id: str, site: str, at: float) -> bytes:
    state = wire.State(
        gateway=str(gateway_id),  # a plain str: msgspec encodes no str subclass
        seq=0,
        status="online",
        ts=int(at * 1000),
        site=site,
        agent_version=f"pantau-provision {wire.__version__}",
        reason="provisioning verify",
    )
    return wire.encode(state)


def publish_birth(
    bundle: Path, broker_url: str | None = None, timeout: float = CONNECT_TIMEOUT
) -> float:
    """Connect as the gateway and publish the test birth; returns when it was published."""
    config = check_bundle(bundle)
    mqtt = config.mqtt
    if broker_url:
        mqtt = msgspec.structs.replace(mqtt, url=BrokerUrl(check_broker_url(broker_url)))
    gateway_id = config.gateway.id
    connected = threading.Event()
    acked = threading.Event()
    failure: list[str] = []

    def on_connect(client: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            failure.append(str(rc))
        connected.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{gateway_id}-verify",
        clean_session=True,
        protocol=paho.MQTTv311,
    )
    login(client, mqtt)
    client.on_connect = on_connect
    client.on_publish = lambda *_a: acked.set()
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise ProvisionError(f"cannot reach the broker at {mqtt.url}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise ProvisionError(f"the broker at {mqtt.url} did not answer within {timeout:g}s")
        if failure:
            raise ProvisionError(
                f"the broker at {mqtt.url} refused {gateway_id}: {failure[0]} "
                "(is the broker config from `pantau-provision broker-config` installed?)"
            )
        at = time.time()
        info = client.publish(
            wire.topic(gateway_id, "state"), test_birth(gateway_id, config.gateway.site, at), qos=1
        )
        if not acked.wait(timeout) and not info.is_published():
            raise ProvisionError(f"the broker did not acknowledge the test birth in {timeout:g}s")
        return at
    finally:
        client.disconnect()
        client.loop_stop()


def verify(
    gateway_id: str,
    bundle: Path,
    *,
    broker_url: str | None = None,
    central: Central | None = None,
    wait: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifyResult:
    at = publish_birth(bundle, broker_url)
    result = VerifyResult(published_at=at)
    if central is None:
        return result
    deadline = time.monotonic() + wait
    while True:
        seen = central.last_seen(gateway_id)
        if seen is not None and seen >= at - 1.0:
            result.central_seen = seen
            return result
        if time.monotonic() >= deadline:
            raise ProvisionError(
                f"central has not seen {gateway_id} since the test birth ({wait:g}s): is central "
                "connected to this broker, with the broker config from broker-config?"
            )
        sleep(0.5)
