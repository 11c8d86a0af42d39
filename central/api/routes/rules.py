"""``/api/v1/rules``: the rules in force, and reloading the rules file (admin). A bad
file answers 422 listing each problem by rule and key; the old rules stay."""

from fastapi import APIRouter, HTTPException

from central.alerts.schemas import RulePublic, RulesPublic
from central.api.deps import AdminToken, ReadToken
from central.api.routes.alerts import AlertsDep
from wire.configfile import ConfigError

router = APIRouter(prefix="/api/v1/rules", tags=["alerts"])


def _public(alerts: AlertsDep) -> RulesPublic:
    rules = alerts.rules
    return RulesPublic(
        source=rules.source,
        rules=[
            RulePublic(
                name=r.name,
                kind=r.kind,
                severity=r.severity,
                definition=r.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            )
            for r in rules.rules
        ],
    )


@router.get("", response_model=RulesPublic)
def list_rules(alerts: AlertsDep, _: ReadToken) -> RulesPublic:
    return _public(alerts)


@router.post("/reload", response_model=RulesPublic)
def reload_rules(alerts: AlertsDep, _: AdminToken) -> RulesPublic:
    try:
        alerts.reload()
    except ConfigError as exc:
        raise HTTPException(
            422,
            {"error": "rules not reloaded; the old rules stay in force", "problems": exc.problems},
        ) from None
    return _public(alerts)
