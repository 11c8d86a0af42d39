"""JSON encoding with a size limit, and validation on the way in.

The agent's hot path does not build models: it keeps each reading as its compact
JSON (:func:`encode_reading`, as it sits in the disk buffer) and joins a batch of
them into a telemetry payload (:func:`encode_telemetry`) without parsing them again.
Both produce exactly what :func:`decode` accepts as :class:`Telemetry`; events work
the same way (:func:`encode_event_body`, :func:`encode_event`).
"""

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from wire.models import (
    PAYLOAD_VERSION,
    Command,
    CommandReply,
    Event,
    Health,
    State,
    Telemetry,
    reading_names_problem,
)
from wire.structs import error_location, plain

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DEPTH = 32
"""How deep an event's ``data`` (a command's ``args``, a reply's ``result``) may nest."""
_FREE_FORM = {"events": "data", "cmd": "args", "cmd/reply": "result"}
_INT64_BOUNDS = re.compile(r"Expected `int` [<>]= -?922337203685477580[78]")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists or dicts more than ``limit`` deep (no recursion)."""
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            todo.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return False


MODELS: dict[str, type[msgspec.Struct]] = {
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


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def encode(model: msgspec.Struct) -> bytes:
    """``model`` as JSON, keys whose value is None left out."""
    data = msgspec.json.encode(_drop_none(msgspec.to_builtins(model, enc_hook=plain)))
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    return data


def encode_reading(
    device: str,
    metric: str,
    value: Any,
    ts: int,
    quality: str,
    *,
    error: str | None = None,
    unit: str | None = None,
) -> bytes:
    """One :class:`Reading` as compact JSON (None fields left out)."""
    doc: dict[str, Any] = {
        "device": str(device),
        "metric": str(metric),
        "value": value,
        "ts": ts,
        "quality": quality,
    }
    if error is not None:
        doc["error"] = error
    if unit is not None:
        doc["unit"] = str(unit)
    return msgspec.json.encode(doc)


def encode_telemetry(gateway: str, seq: int, site: str | None, readings: Iterable[bytes]) -> bytes:
    """A :class:`Telemetry` payload from readings already encoded by :func:`encode_reading`."""
    head = b'{"v":%d,"gateway":%s,"seq":%d,' % (
        PAYLOAD_VERSION,
        msgspec.json.encode(str(gateway)),  # a validated id may be a str subclass
        seq,
    )
    if site is not None:
        head += b'"site":%s,' % msgspec.json.encode(str(site))
    return head + b'"readings":[' + b",".join(readings) + b"]}"


def encode_event_body(
    site: str | None, device: str, kind: str, *, ts: int, data: Any, error: str | None = None
) -> bytes:
    """An :class:`Event` without its envelope (``v``, ``gateway``, ``seq``), as the agent
    buffers it; :func:`encode_event` adds the envelope when it is sent."""
    doc: dict[str, Any] = {"device": str(device), "kind": str(kind), "ts": ts, "data": data}
    if site is not None:
        doc = {"site": str(site), **doc}
    if error is not None:
        doc["error"] = error
    return msgspec.json.encode(doc, enc_hook=str)


def encode_event(gateway: str, seq: int, body: bytes) -> bytes:
    """The :class:`Event` payload: the envelope, then the body of :func:`encode_event_body`."""
    head = b'{"v":%d,"gateway":%s,"seq":%d,' % (
        PAYLOAD_VERSION,
        msgspec.json.encode(str(gateway)),
        seq,
    )
    return head + body[1:]


def decode(kind: str, payload: bytes, topic_gateway: str | None = None) -> Any:
    """Validate ``payload`` as the model for ``kind``; raises WireError."""
    model = MODELS.get(kind)
    if model is None:
        raise WireError("bad_topic", f"unknown kind {kind!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        obj = _decoder(model).decode(payload)
    except msgspec.ValidationError as exc:
        if _INT64_BOUNDS.search(str(exc)):  # a number no gateway can mean: 4,000 digits...
            raise WireError("bad_json", f"a number out of range: {_summarize(exc)}") from None
        try:  # msgspec validates while it parses: is the whole payload JSON at all?
            msgspec.json.decode(payload)
        except msgspec.DecodeError as bad:
            raise WireError("bad_json", str(bad)) from None
        except RecursionError:
            raise WireError("bad_json", "nested too deeply") from None
        raise WireError("schema", _summarize(exc)) from None
    except msgspec.DecodeError as exc:
        raise WireError("bad_json", str(exc)) from None
    except RecursionError:  # msgspec's own guard against deep nesting
        raise WireError("bad_json", "nested too deeply") from None
    if model is Telemetry and b"\\" in payload:  # a control character needs an escape
        problem = reading_names_problem(obj)
        if problem is not None:
            raise WireError("schema", problem)
    free = _FREE_FORM.get(kind)
    if free is not None and _too_deep(getattr(obj, free), MAX_DEPTH):
        raise WireError("bad_json", f"{free}: nested deeper than {MAX_DEPTH} levels")
    gateway = getattr(obj, "gateway", None)
    if topic_gateway is not None and gateway is not None and gateway != topic_gateway:
        raise WireError(
            "gateway_mismatch", f"payload gateway {gateway!r} on topic of {topic_gateway!r}"
        )
    return obj


_DECODERS: dict[type, Any] = {}


def _decoder(model: type[msgspec.Struct]) -> Any:
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = msgspec.json.Decoder(model)
    return decoder


def _summarize(exc: msgspec.ValidationError) -> str:
    """``readings.0.ts: Expected `int` >= 0`` (the first problem; msgspec stops there)."""
    loc, message = error_location(exc)
    return f"{'.'.join(str(p) for p in loc) or '<root>'}: {message}"
