"""Webhook signatures: ``X-Pantau-Signature: t=<unix seconds>,v2=<hex>`` where ``<hex>``
is HMAC-SHA256(secret, ``"<t>.<delivery id>.<raw body>"``) and the delivery id is the
``X-Pantau-Delivery`` header. Recipients check the HMAC with a constant-time compare,
refuse a ``t`` outside their replay window and drop a delivery id they have seen: since
the id is signed, a forger can't dress up a captured notification as a new delivery.

(``v1``, before 0.2, signed only ``"<t>.<raw body>"``; it is no longer sent.)"""

import hashlib
import hmac

HEADER = "X-Pantau-Signature"
DELIVERY_HEADER = "X-Pantau-Delivery"
DEFAULT_TOLERANCE = 300.0


def _mac(secret: str, body: bytes, t: int, delivery: str) -> str:
    signed = f"{t}.{delivery}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int, delivery: str) -> str:
    return f"t={t},v2={_mac(secret, body, t, delivery)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    delivery: str,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """What a recipient does (docs/alerts.md has the same in a few lines)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - t) > tolerance:
        return False
    expected = _mac(secret, body, t, delivery)
    return any(hmac.compare_digest(expected, v) for v in parts.get("v2", []))
