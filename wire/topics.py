"""Topic names: ``pantau/v1/<gateway-id>/<kind>``."""

import re

PREFIX = "pantau/v1"
UPLINK_KINDS = ("telemetry", "events", "state", "health", "cmd/reply")
DOWNLINK_KINDS = ("cmd",)
KINDS = UPLINK_KINDS + DOWNLINK_KINDS

_GATEWAY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def gateway_id_ok(gateway_id: str) -> bool:
    """Lowercase letters, digits and dashes; 1-64 chars; no leading or trailing dash."""
    return bool(_GATEWAY_ID.match(gateway_id))


RESERVED_IDS = ("central",)
RESERVED_PREFIXES = ("pantau-central", "$")


def reserved_gateway_id(gateway_id: str) -> bool:
    """Names a gateway may not have: central's broker identities (``pantau-central``,
    ``pantau-central-1``...), ``central``, and anything starting ``$`` (the broker's)."""
    name = gateway_id.lower()
    return name in RESERVED_IDS or name.startswith(RESERVED_PREFIXES)


def topic(gateway_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not gateway_id_ok(gateway_id):
        raise ValueError(f"invalid gateway id {gateway_id!r}")
    return f"{PREFIX}/{gateway_id}/{kind}"


def subscription(kind: str, gateway_id: str = "+") -> str:
    """A subscription filter for one kind from every gateway (or one)."""
    return f"{PREFIX}/{gateway_id}/{kind}"


def parse_topic(name: str) -> tuple[str, str] | None:
    """``pantau/v1/gw-1/telemetry`` → ``("gw-1", "telemetry")``; None if not ours."""
    parts = name.split("/", 3)
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    gateway_id, kind = parts[2], parts[3]
    if kind not in KINDS or not gateway_id_ok(gateway_id):
        return None
    return gateway_id, kind
