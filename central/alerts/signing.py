"""Webhook signatures: ``X-Pantau-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256(secret, ``"<t>.<raw body>"``). Recipients check the
HMAC with a constant-time compare and refuse a ``t`` outside their replay window."""

import hashlib
import hmac

HEADER = "X-Pantau-Signature"
DEFAULT_TOLERANCE = 300.0


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, header: str, now: float, tolerance: float = DEFAULT_TOLERANCE
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
    expected = sign(secret, body, t).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
