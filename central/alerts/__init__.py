"""Alert rules, incidents and signed webhooks.

Readings, births and deaths flow from ingest into the :class:`AlertService`,
whose :class:`~central.alerts.engine.Engine` (pure logic, injected clock) turns
them into transitions (firing, level changed, resolved). Transitions become
incidents in SQLite and notifications in a persisted webhook outbox, delivered
Alertmanager-style (payload version "4", HMAC-signed, retried with backoff).

Exceptions::

    wire.configfile.ConfigError   a rules file that can't be used (names rule and key)
    DeliveryError                 one failed webhook attempt (.retryable, .status, .body)
"""

from central.alerts.outbox import DeliveryError
from central.alerts.rules import RuleSet, load_rules
from central.alerts.service import AlertService

__all__ = ["AlertService", "DeliveryError", "RuleSet", "load_rules"]
