"""The webhook body: Prometheus Alertmanager's webhook payload, version "4", one
alert per notification, so receivers written for Alertmanager work unchanged."""

import json
from datetime import UTC, datetime
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(
    *,
    receiver: str,
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: float,
    ends_at: float | None,
    fingerprint: str,
    external_url: str,
    generator_url: str,
) -> dict[str, Any]:
    alertname = labels.get("alertname", "")
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", fingerprint="{fingerprint}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(starts_at),
                "endsAt": rfc3339(ends_at),
                "generatorURL": generator_url,
                "fingerprint": fingerprint,
            }
        ],
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sample(status: str, now: float, receiver: str = "test") -> dict[str, Any]:
    """What ``pantau-central webhook test`` sends."""
    labels = {
        "alertname": "pantau-webhook-test",
        "severity": "info",
        "gateway": "gw-sample",
        "site": "sample-site",
        "device": "river-1",
        "metric": "level_cm",
    }
    return build(
        receiver=receiver,
        status=status,
        labels=labels,
        annotations={"summary": "river-1 at sample-site: 301 cm (a test from pantau-central)"},
        starts_at=now - 60,
        ends_at=now if status == "resolved" else None,
        fingerprint="0000000000000000",
        external_url="",
        generator_url="",
    )
