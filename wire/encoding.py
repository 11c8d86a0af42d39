"""JSON encoding with a size limit, and validation on the way in."""

from typing import Any

from pydantic import BaseModel, ValidationError

from wire.models import Command, CommandReply, Event, Health, State, Telemetry

MAX_PAYLOAD_BYTES = 256 * 1024

MODELS: dict[str, type[BaseModel]] = {
    "telemetry": Telemetry,
    "events": Event,
    "state": State,
    "health": Health,
    "cmd": Command,
    "cmd/reply": CommandReply,
}


class WireError(ValueError):
    """A payload that breaks the contract. ``reason`` is a short stable code:
    ``too_large``, ``bad_json``, ``schema``, ``gateway_mismatch``, ``bad_topic``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(model: BaseModel) -> bytes:
    data = model.model_dump_json(exclude_none=True).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    return data


def decode(kind: str, payload: bytes, topic_gateway: str | None = None) -> Any:
    """Validate ``payload`` as the model for ``kind``; raises WireError."""
    model = MODELS.get(kind)
    if model is None:
        raise WireError("bad_topic", f"unknown kind {kind!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        obj = model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            detail = str(first.get("ctx", {}).get("error", first["msg"]))
            raise WireError("bad_json", detail) from None
        raise WireError("schema", _summarize(exc)) from None
    gateway = getattr(obj, "gateway", None)
    if topic_gateway is not None and gateway is not None and gateway != topic_gateway:
        raise WireError(
            "gateway_mismatch", f"payload gateway {gateway!r} on topic of {topic_gateway!r}"
        )
    return obj


def _summarize(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
