"""``/api/v1/webhooks``: the configured webhooks (never their secrets) and the
delivery log of the outbox: pending, delivered, failed (with the answer), expired."""

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from fastapi import APIRouter, Query

from central.alerts.schemas import DeliveryPublic
from central.api.deps import ReadToken
from central.api.routes.alerts import AlertsDep
from wire.structs import REDACTED

router = APIRouter(prefix="/api/v1/webhooks", tags=["alerts"])


def redact_url(url: str) -> str:
    """``url`` as a read token sees it: credentials in the userinfo, every query value and
    path parts that look like tokens (a chat bot's ``/bot123:AA...``, a Slack hook's
    ``/services/T0/B0/XXXX``) replaced by ``**redacted**``; scheme, host and port kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    path = "/".join(
        REDACTED if len(seg) >= 16 or ":" in seg or any(c.isdigit() for c in seg[:1]) else seg
        for seg in parts.path.split("/")
    )
    query = "&".join(
        f"{key}={REDACTED}" for key, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


@router.get("")
def list_webhooks(alerts: AlertsDep, token: ReadToken) -> list[dict[str, Any]]:
    """The webhooks (never their secrets). A read token sees their URLs redacted
    (credentials, query values, token-like path parts); an admin token the whole URL."""
    admin = token.role == "admin"
    return [
        {
            "name": h.name,
            "url": h.url if admin else redact_url(h.url),
            "match": h.match,
            "timeout": h.timeout,
        }
        for h in alerts.outbox.hooks.values()
    ]


@router.get("/deliveries", response_model=list[DeliveryPublic])
def list_deliveries(
    alerts: AlertsDep,
    _: ReadToken,
    state: Literal["pending", "delivered", "failed", "expired", "superseded"] | None = None,
    webhook: str | None = None,
    incident: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeliveryPublic]:
    rows = alerts.outbox.search(state=state, webhook=webhook, incident=incident, limit=limit)
    return [DeliveryPublic.of(r) for r in rows]
