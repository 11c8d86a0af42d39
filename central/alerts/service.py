"""``AlertService``: rules + engine + incidents + silences + outbox, run by central.

``observe(kind, message)`` is an ingest observer: it runs in paho's network thread,
so it only queues the message. One engine thread applies queued messages and,
every ``alerts.evaluation_interval``, the time-driven checks, the registry
inventory and repeat notifications. Each transition changes its incident and
queues its notifications in one SQLite transaction; webhook workers deliver them.

Across restarts: firing incidents are loaded back into the engine as firing, so
they never fire again; fresh data (which the broker kept for us while we were
down) resolves them as usual, and the resolution is sent. Outbox rows that were
waiting are delivered after the restart.

Several workers: only the holder of the alert lease (``central.alerts.lease``)
evaluates rules and delivers webhooks; the others only serve the API over the
shared store. A worker that takes the lease over starts from the stored incidents
exactly as after a restart, so nothing fires twice. When ingest is split over a
shared subscription, the leader reads every gateway through its own feed
(``central.alerts.feed``) instead of its share of ingest.
"""

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import wire
from central.alerts import payload
from central.alerts.engine import Engine, Transition
from central.alerts.feed import Feed
from central.alerts.incidents import Incidents, subject_of
from central.alerts.lease import RETRY, Lease
from central.alerts.outbox import Hook, Outbox
from central.alerts.rules import LevelsRule, RuleSet, load_rules
from central.alerts.schedule import DEFAULT_TIMEZONE, zone
from central.alerts.silences import Silences
from central.alerts.store import AlertStore
from central.config import CentralConfig
from central.database import target

log = logging.getLogger(__name__)

INVENTORY_EVERY = 30.0  # seconds between reads of the registry's gateways and devices
TIMEZONE_TTL = 60.0


class RegistryView(Protocol):
    def gateways(self) -> list[dict[str, Any]]: ...

    def devices(self, gateway_id: str) -> list[dict[str, Any]]: ...


class AlertService:
    def __init__(
        self,
        config: CentralConfig,
        registry: RegistryView | None = None,
        now: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_delivery: Callable[[str, str], None] | None = None,
        *,
        lease: Lease | None = None,
    ) -> None:
        """Raises ``wire.configfile.ConfigError`` when the rules file is bad.
        ``on_delivery(webhook, outcome)`` counts each webhook delivery attempt.
        ``lease``: lead only while holding it (None: always lead, as tests do)."""
        self.config = config
        self.registry = registry
        self.now = now
        self.rules_file: Path | None = config.rules_file
        rules = load_rules(self.rules_file) if self.rules_file else RuleSet()
        self.store = AlertStore(target(config.database.url, config.data_dir, "alerts.db"))
        self.incidents = Incidents(self.store)
        self.silences = Silences(self.store)
        hooks = [
            Hook(h.name, h.url, h.secret_value(), dict(h.match), h.timeout) for h in config.webhooks
        ]
        alerts = config.alerts
        self.outbox = Outbox(
            self.store,
            hooks,
            now,
            expiry=alerts.webhook_expiry,
            max_backoff=alerts.max_backoff,
            rng=rng,
            on_attempt=on_delivery,
        )
        self.engine = Engine(rules, now, self.timezone_of, alerts.max_reading_age)
        self.external_url = (config.api.external_url or "").rstrip("/")
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._lock = threading.RLock()  # the engine is used by one thread at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timezones: dict[str | None, tuple[float, ZoneInfo]] = {}
        self._warned_timezone = False
        self._next_inventory = 0.0
        self._next_tick = 0.0
        self.reload_error: list[str] = []
        self.lease = lease
        self._feed: Feed | None = None
        self.leading = lease is None or lease.acquire()
        if self.leading:
            self._restore()

    # ingest observer (paho's thread: queue only)

    def observe(self, kind: str, message: Any) -> None:
        if self.leading and self._feed is None:
            self._queue.put((kind, message))

    def _from_feed(self, kind: str, message: Any) -> None:
        self._queue.put((kind, message))

    # lifecycle

    def start(self) -> None:
        self._stop.clear()
        if self.leading:
            self._start_leading()
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop", None))
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._feed is not None:
            self._feed.stop()
        if self.leading:
            try:
                with self._lock:
                    self._drain()  # what ingest handed us before it stopped
            except Exception:
                log.exception("alert engine error while stopping")
        self.outbox.stop()
        self.store.close()
        if self.lease is not None:
            self.lease.release()

    def _lead(self) -> None:
        """This worker took the lease: start from the stored incidents, as after a restart."""
        assert self.lease is not None
        log.warning("this worker now evaluates alert rules and sends webhooks (%s)",
                    self.lease.describe())  # fmt: skip
        with self._lock:
            self.engine = Engine(
                self.engine.rules, self.now, self.timezone_of, self.config.alerts.max_reading_age
            )
            while not self._queue.empty():  # a follower queues nothing; be sure
                self._queue.get_nowait()
            self.leading = True
            self._next_tick = self._next_inventory = 0.0
            self._restore()
            self._start_leading()

    def _start_leading(self) -> None:
        self.outbox.abandon_unknown()
        self.outbox.start()
        if self.lease is not None and self.config.mqtt.shared_group:
            self._feed = Feed(self.config, self._from_feed)
            self._feed.start()

    def _follow(self) -> None:
        """The lease is gone (PostgreSQL unreachable): stop at once; another worker leads."""
        log.error("lost the alert lease: this worker stops evaluating alert rules")
        with self._lock:
            self.leading = False
            if self._feed is not None:
                self._feed.stop()
                self._feed = None
            self.outbox.stop()

    def _run(self) -> None:
        if self.lease is not None:
            self._campaign()
        else:
            self._evaluate(lambda: True)

    def _try_lead(self) -> bool:
        assert self.lease is not None
        try:
            if not self.lease.acquire():
                return False
            self._lead()
        except Exception:
            log.exception("could not take over alerting")
            self._follow()
            self.lease.release()
            return False
        return True

    def _campaign(self) -> None:
        """Follow until the lease is ours, lead while it stays ours, and again."""
        assert self.lease is not None
        lease = self.lease
        while not self._stop.is_set():
            if not self.leading and not self._try_lead():
                self._stop.wait(RETRY)
                continue
            self._evaluate(_Every(RETRY, lease.held))
            if not self._stop.is_set():
                self._follow()
                lease.release()
                self._stop.wait(RETRY)

    def _evaluate(self, still_ours: Callable[[], bool]) -> None:
        interval = self.config.alerts.evaluation_interval
        while not self._stop.is_set() and still_ours():
            timeout = max(0.0, min(interval, self._next_tick - self.now()))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            try:
                with self._lock:
                    if item is not None:
                        self._handle(*item)
                        self._drain(limit=5000)
                    if self.now() >= self._next_tick:
                        self._next_tick = self.now() + interval
                        self._periodic()
            except Exception:
                log.exception("alert engine error")

    def run_once(self) -> None:
        """Apply everything queued, then the periodic checks (tests drive time with this)."""
        with self._lock:
            self._drain()
            self._periodic()

    def _drain(self, limit: int | None = None) -> None:
        n = 0
        while limit is None or n < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._handle(*item)
            n += 1

    def _periodic(self) -> None:
        now = self.now()
        if self.registry is not None and now >= self._next_inventory:
            self._next_inventory = now + INVENTORY_EVERY
            self._apply(self.engine.inventory(*self._inventory()))
        self._apply(self.engine.tick())
        self._repeat(now)

    def _inventory(self) -> tuple[list[dict[str, Any]], list[tuple[str, str, str | None]]]:
        assert self.registry is not None
        try:
            gateways = self.registry.gateways()
            devices = [
                (gw["id"], d["id"], d.get("profile"))
                for gw in gateways
                for d in self.registry.devices(gw["id"])
            ]
        except Exception:
            log.exception("could not read the registry for alert rules")
            return [], []
        return gateways, devices

    # messages

    def _handle(self, kind: str, message: Any) -> None:
        if kind == "stop":
            return
        gateway = getattr(message, "gateway", None)
        if gateway is None:
            return
        site = getattr(message, "site", None)
        if kind == "state":
            assert isinstance(message, wire.State)
            devices = [(d.id, d.profile) for d in message.devices]
            self._apply(
                self.engine.state(
                    gateway, site, message.status == "online", devices, message.reason
                )
            )
            return
        found = self.engine.heard(gateway, site)
        if kind == "telemetry":
            assert isinstance(message, wire.Telemetry)
            try:  # the whole message in one call; its transitions in order, once
                self.engine.readings(gateway, site, message.readings, found)
            finally:
                if found:
                    self._apply(found)
        elif found:
            self._apply(found)

    # transitions → incidents → outbox

    def _apply(self, transitions: list[Transition]) -> None:
        if not self.leading:
            return  # another worker records and notifies
        for t in transitions:
            try:
                self._record(t)
            except Exception:
                log.exception("could not record %s of alert %s", t.change, t.rule)

    def _record(self, t: Transition) -> None:
        now = self.now()
        with self.store.transaction() as db:
            incident = self.incidents.firing_id(db, t.fingerprint)
            if t.change == "firing" and incident is None:
                incident = self.incidents.open(db, t)
                log.warning("alert %s firing: %s", t.rule, _describe(t))
            elif incident is None:
                return  # resolving or changing an incident we never opened
            else:
                self.incidents.update(db, incident, t)
                if t.change == "resolved":
                    log.info("alert %s resolved: %s", t.rule, _describe(t))
            row = db.execute(
                "SELECT notified, labels, annotations, starts_at, ends_at FROM incidents "
                "WHERE id = ?",
                (incident,),
            ).rows[0]
            labels = t.labels or _json(row["labels"])
            if t.change == "resolved":
                if row["notified"]:
                    self._notify(db, incident, "resolved", now)
                return
            if self.silences.matching(labels, now):
                self.incidents.log(db, incident, now, "silenced")
                return
            self._notify(db, incident, t.change, now)

    def _notify(self, db: Any, incident: int, event: str, now: float) -> None:
        row = db.execute("SELECT * FROM incidents WHERE id = ?", (incident,)).fetchone()
        labels, annotations = _json(row["labels"]), _json(row["annotations"])
        status = "resolved" if row["status"] == "resolved" else "firing"

        def body_for(receiver: str) -> bytes:
            return payload.encode(
                payload.build(
                    receiver=receiver,
                    status=status,
                    labels=labels,
                    annotations=annotations,
                    starts_at=row["starts_at"],
                    ends_at=row["ends_at"],
                    fingerprint=row["fingerprint"],
                    external_url=self.external_url,
                    generator_url=f"{self.external_url}/api/v1/incidents/{incident}"
                    if self.external_url
                    else "",
                )
            )

        sent = self.outbox.enqueue(
            db, incident, event=event, status=status, labels=labels, body_for=body_for, at=now
        )
        if status == "firing":
            self.incidents.notified(db, incident, now)
        self.incidents.log(db, incident, now, "notified", detail=f"{event} to {sent} webhook(s)")

    def _repeat(self, now: float) -> None:
        """Re-notify still-firing incidents every ``repeat_interval`` (not when acknowledged
        or silenced); notify ones whose silence has ended."""
        repeat = self.config.alerts.repeat_interval
        for row in self.incidents.firing():
            if self.silences.matching(row["labels"], now):
                continue
            if row["notified"] and (row["acked_at"] or now - row["notified_at"] < repeat):
                continue
            with self.store.transaction() as db:
                event = "repeat" if row["notified"] else "firing"
                self._notify(db, row["id"], event, now)

    # restarts and reloads

    def _restore(self) -> None:
        kept, resolved = 0, []
        for row in self.incidents.firing():
            if self.engine.restore(row["rule"], subject_of(row), row["level"], row["value"]):
                kept += 1
            else:
                resolved.append(row)
        for row in resolved:  # their rule was removed or changed while we were down
            self._resolve_row(row, "its rule was removed or no longer matches")
        if kept or resolved:
            log.info(
                "alerts: %d incident(s) still firing from before the restart, %d resolved",
                kept,
                len(resolved),
            )

    def _resolve_row(self, row: dict[str, Any], why: str) -> None:
        now = self.now()
        with self.store.transaction() as db:
            db.execute(
                "UPDATE incidents SET status = 'resolved', ends_at = ?, updated = ? WHERE id = ?",
                (now, now, row["id"]),
            )
            self.incidents.log(db, row["id"], now, "resolved", detail=why)
            if row["notified"]:
                self._notify(db, row["id"], "resolved", now)

    def reload(self) -> RuleSet:
        """Load the rules file again. Raises ConfigError (naming rule and key) and keeps
        the old rules when the file is bad."""
        from wire.configfile import ConfigError

        if self.rules_file is None:
            raise ConfigError(["central.yaml has no rules_file to reload"])
        try:
            rules = load_rules(self.rules_file)
        except ConfigError as exc:
            self.reload_error = exc.problems
            log.error("rules not reloaded, the old rules stay in force:\n%s", exc)
            raise
        with self._lock:
            self._apply(self.engine.set_rules(rules))
            self._next_tick = 0.0
        self.reload_error = []
        log.info("rules reloaded from %s: %d rule(s)", self.rules_file, len(rules.rules))
        return rules

    def set_webhooks(self, webhooks: list[Any]) -> tuple[list[str], list[str], list[str]]:
        """Deliver to these webhooks (central.yaml's ``webhooks:`` sections) from now on.
        Raises OSError when a ``secret_file`` can't be read (the old webhooks stay)."""
        hooks = [Hook(h.name, h.url, h.secret_value(), dict(h.match), h.timeout) for h in webhooks]
        with self._lock:  # not while the engine queues notifications
            return self.outbox.set_hooks(hooks)

    def reload_logged(self) -> None:
        """SIGHUP: reload; a bad file is logged (naming rule and key) and the old rules stay."""
        from wire.configfile import ConfigError

        try:
            self.reload()
        except ConfigError:
            pass  # reload() logged the problems

    @property
    def rules(self) -> RuleSet:
        return self.engine.rules

    def firing_counts(self) -> dict[tuple[str, ...], float]:
        """Firing incidents by (rule, severity), every loaded rule included at 0
        (``pantau_incidents_firing``)."""
        counts: dict[tuple[str, ...], float] = {}
        for rule in self.engine.rules.rules:
            severities = {rule.severity}
            if isinstance(rule, LevelsRule):
                severities.update(rule.severity_of(level) for level in rule.levels)
            for severity in severities:
                counts[(rule.name, severity)] = 0.0
        for row in self.incidents.firing():
            key = (row["rule"], row["severity"])
            counts[key] = counts.get(key, 0.0) + 1
        return counts

    # timezones

    def timezone_of(self, site: str | None) -> ZoneInfo:
        """The site's timezone from the registry; Asia/Jakarta (WIB) when unknown."""
        now = self.now()
        cached = self._timezones.get(site)
        if cached is not None and cached[0] > now:
            return cached[1]
        name = None
        lookup = getattr(self.registry, "site_timezone", None)
        if lookup is not None and site:
            try:
                name = lookup(site)
            except Exception:
                log.exception("could not read the timezone of site %s", site)
        elif not self._warned_timezone:
            self._warned_timezone = True
            log.warning("no site timezones in the registry yet: schedules use %s", DEFAULT_TIMEZONE)
        tz = name if isinstance(name, ZoneInfo) else zone(name) or ZoneInfo(DEFAULT_TIMEZONE)
        self._timezones[site] = (now + TIMEZONE_TTL, tz)
        return tz

    # API helpers

    def state_of(self, row: dict[str, Any], now: float | None = None) -> str:
        """firing, acknowledged, silenced or resolved."""
        if row["status"] == "resolved":
            return "resolved"
        if self.silences.matching(row["labels"], self.now() if now is None else now):
            return "silenced"
        return "acknowledged" if row["acked_at"] else "firing"


class _Every:
    """``check()`` at most every ``seconds``; True in between."""

    def __init__(self, seconds: float, check: Callable[[], bool]) -> None:
        self.seconds = seconds
        self.check = check
        self.last = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last < self.seconds:
            return True
        self.last = time.monotonic()
        return self.check()


def _json(text: str) -> Any:
    return json.loads(text)


def _describe(t: Transition) -> str:
    parts = [f"{k}={v}" for k, v in t.labels.items() if k not in ("alertname", "severity")]
    if t.value is not None:
        parts.append(f"value={t.value}")
    return " ".join(parts)
