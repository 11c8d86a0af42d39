"""The contract between the Pantau agent and central: topics, payloads, encoding.

Both sides import this package; nothing else is shared between them.

Exceptions::

    WireError            a payload or topic that breaks the contract (has .reason)
"""

from wire.durations import Duration, format_duration, parse_duration
from wire.encoding import (
    MAX_PAYLOAD_BYTES,
    WireError,
    decode,
    encode,
    encode_event,
    encode_event_body,
    encode_reading,
    encode_telemetry,
)
from wire.models import (
    PAYLOAD_VERSION,
    Command,
    CommandReply,
    DeviceInfo,
    DeviceStatus,
    Event,
    Health,
    Quality,
    Reading,
    State,
    Telemetry,
    ValueType,
    value_type,
)
from wire.topics import (
    KINDS,
    UPLINK_KINDS,
    gateway_id_ok,
    parse_topic,
    reserved_gateway_id,
    topic,
)

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_VERSION",
    "UPLINK_KINDS",
    "Command",
    "CommandReply",
    "DeviceInfo",
    "DeviceStatus",
    "Duration",
    "Event",
    "Health",
    "Quality",
    "Reading",
    "State",
    "Telemetry",
    "ValueType",
    "WireError",
    "__version__",
    "decode",
    "encode",
    "encode_event",
    "encode_event_body",
    "encode_reading",
    "encode_telemetry",
    "format_duration",
    "gateway_id_ok",
    "parse_duration",
    "parse_topic",
    "reserved_gateway_id",
    "topic",
    "value_type",
]
