"""How agent, central and provisioning reach the MQTT broker: the ``mqtt:`` config keys
they share, TLS setup for a paho client, and a short login test.

paho is imported only inside :func:`probe_broker`, so importing this module costs
nothing on a program that never talks to a broker.
"""

import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wire.durations import Duration
from wire.structs import Secret, Section, check_secret_file, read_secret_file


class TlsSection(Section):
    """``mqtt.tls``: the CA that signed the broker's certificate, and optionally our own."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip the hostname check (lab use only)

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")


class BrokerUrl(str):
    """``mqtt://host:port`` or ``mqtts://host:port``."""

    @classmethod
    def parse(cls, value: Any) -> "BrokerUrl":
        if not isinstance(value, str):
            raise ValueError("expected mqtt://host:port or mqtts://host:port")
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("expected mqtt://host:port or mqtts://host:port")
        try:
            parts.port  # noqa: B018 - validates the port number
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return cls(value)


class MqttBase(Section):
    """The ``mqtt:`` keys every Pantau program has; each adds its own."""

    url: BrokerUrl = BrokerUrl("mqtt://127.0.0.1:1883")
    username: str | None = None
    password: Secret | None = None
    password_file: Path | None = None
    keepalive: Duration = Duration(30.0)
    tls: TlsSection | None = None

    def __post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        check_secret_file(self.password_file)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None

    def secret(self) -> str | None:
        """The password, read from ``password_file`` when given."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_secret_file(self.password_file)
        return None


def configure_tls(client: Any, config: MqttBase) -> None:
    """TLS on a paho client from ``mqtt.tls`` when the URL is ``mqtts://`` (or tls is set)."""
    if not config.use_tls:
        return
    tls = config.tls
    client.tls_set(
        ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
        certfile=str(tls.cert_file) if tls and tls.cert_file else None,
        keyfile=str(tls.key_file) if tls and tls.key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    if tls and tls.insecure:
        client.tls_insecure_set(True)


def login(client: Any, config: MqttBase) -> None:
    """Credentials and TLS from ``config`` on a new paho client."""
    if config.username:
        client.username_pw_set(config.username, config.secret())
    configure_tls(client, config)


def probe_broker(config: MqttBase, client_id: str, timeout: float = 5.0) -> str | None:
    """None when the broker accepts these credentials, else what went wrong (no secrets)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Event()
    result: list[str | None] = [f"no answer within {timeout:g}s"]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        login(client, config)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"TLS files unusable: {exc}"

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result[0] = None if not rc.is_failure else f"broker refused the connection: {rc}"
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(config.host, config.port, keepalive=10)
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
