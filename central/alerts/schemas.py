"""Bodies of the alert routes (``/api/v1/alerts``, ``incidents``, ``silences``,
``webhooks/deliveries``, ``rules``). Times are ISO 8601 in UTC."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from central.durations import Duration

Text = Annotated[str, StringConstraints(max_length=1000)]
IncidentState = Literal["firing", "acknowledged", "silenced", "resolved"]


def when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class IncidentPublic(BaseModel):
    id: int
    fingerprint: str
    rule: str
    state: IncidentState = Field(description="firing, acknowledged, silenced or resolved")
    status: Literal["firing", "resolved"]
    severity: str
    level: str | None
    gateway: str
    device: str | None
    metric: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    value: Any
    starts_at: datetime
    ends_at: datetime | None
    notified_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None
    events: list[dict[str, Any]] | None = None

    @classmethod
    def of(
        cls, row: dict[str, Any], state: str, events: list[dict[str, Any]] | None = None
    ) -> "IncidentPublic":
        return cls(
            **{k: row[k] for k in ("id", "fingerprint", "rule", "status", "severity", "level")},
            state=state,  # type: ignore[arg-type]
            gateway=row["gateway"],
            device=row["device"],
            metric=row["metric"],
            labels=row["labels"],
            annotations=row["annotations"],
            value=row["value"],
            starts_at=when(row["starts_at"]),  # type: ignore[arg-type]
            ends_at=when(row["ends_at"]),
            notified_at=when(row["notified_at"]),
            acked_at=when(row["acked_at"]),
            acked_by=row["acked_by"],
            ack_comment=row["ack_comment"],
            events=[{**e, "at": when(e["at"])} for e in events] if events is not None else None,
        )


class AckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Text = ""


class SilenceCreate(BaseModel):
    """Give ``until`` (a time) or ``duration`` (``"2h"``)."""

    model_config = ConfigDict(extra="forbid")
    matchers: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
        Annotated[str, StringConstraints(min_length=1, max_length=200)],
    ] = Field(min_length=1, description="label → glob, e.g. {alertname: tapping-box-silent}")
    starts_at: datetime | None = None
    until: datetime | None = None
    duration: Duration | None = None
    comment: Text = ""

    @model_validator(mode="after")
    def _end(self) -> "SilenceCreate":
        if (self.until is None) == (self.duration is None):
            raise ValueError("give 'until' or 'duration'")
        for value in (self.until, self.starts_at):
            if value is not None and value.tzinfo is None:
                raise ValueError("times need a timezone, e.g. 2026-11-23T22:00:00+07:00")
        return self


class SilencePublic(BaseModel):
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    active: bool
    comment: str
    created_by: str
    created: datetime

    @classmethod
    def of(cls, row: dict[str, Any], now: float) -> "SilencePublic":
        return cls(
            id=row["id"],
            matchers=row["matchers"],
            starts_at=when(row["starts_at"]),  # type: ignore[arg-type]
            ends_at=when(row["ends_at"]),  # type: ignore[arg-type]
            active=row["starts_at"] <= now < row["ends_at"],
            comment=row["comment"],
            created_by=row["created_by"],
            created=when(row["created"]),  # type: ignore[arg-type]
        )


class DeliveryPublic(BaseModel):
    id: int
    uid: str = Field(description="also sent as the X-Pantau-Delivery header")
    incident: int
    webhook: str
    event: str
    status: str
    state: Literal["pending", "delivered", "failed", "expired", "superseded"]
    attempts: int
    created: datetime
    next_attempt: datetime | None
    done_at: datetime | None
    last_error: str | None
    response_status: int | None
    response_body: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> "DeliveryPublic":
        return cls(
            **{
                k: row[k]
                for k in (
                    "id",
                    "uid",
                    "incident",
                    "webhook",
                    "event",
                    "status",
                    "state",
                    "attempts",
                    "last_error",
                    "response_status",
                    "response_body",
                )
            },
            created=when(row["created"]),  # type: ignore[arg-type]
            next_attempt=when(row["next_attempt"]) if row["state"] == "pending" else None,
            done_at=when(row["done_at"]),
        )


class RulePublic(BaseModel):
    name: str
    kind: str
    severity: str
    definition: dict[str, Any]


class RulesPublic(BaseModel):
    source: str
    rules: list[RulePublic]
