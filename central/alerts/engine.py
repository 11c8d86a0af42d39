"""Rule evaluation: pure logic over an injected clock, no I/O.

The service feeds the engine what ingest sees (readings, births and deaths, any
message from a gateway) and, now and then, the registry's inventory; ``tick()``
runs the time-driven checks (``for``, ``stale``, ``offline``, ``quality``). Every
call returns the transitions it caused: an alert starts firing, a ``levels``
alert changes level, an alert resolves. Times are the engine clock's (arrival
time), except a ``rate`` window, which is measured in sample times.

One alert per (rule, subject); the subject is a gateway (``offline``), a device
(``stale``, ``quality``) or a device's metric (``threshold``, ``levels``, ``rate``).
"""

import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from central.alerts.matching import Where, matches
from central.alerts.rules import (
    LevelsRule,
    OfflineRule,
    QualityRule,
    RateRule,
    Rule,
    RuleSet,
    StaleRule,
    ThresholdRule,
)
from central.alerts.templates import render, show
from wire import Reading, format_duration

log = logging.getLogger(__name__)

Change = Literal["firing", "changed", "resolved"]


RULE_CACHE_MAX = 100_000
"""(gateway, device, metric) -> matching rules entries kept; cleared when full."""


class Subject(NamedTuple):
    """What one alert is about (a tuple: cheap to build and to hash)."""

    gateway: str
    device: str | None = None
    metric: str | None = None


@dataclass
class Transition:
    change: Change
    rule: str
    subject: Subject
    fingerprint: str
    at: float
    labels: dict[str, str]
    annotations: dict[str, str]
    value: Any = None
    level: str | None = None


@dataclass
class GatewayFacts:
    site: str | None = None
    last_heard: float | None = None  # any message, or the registry's last_seen
    dead_since: float | None = None  # a death message not followed by any message
    reason: str | None = None
    registered: float | None = None  # registered (provisioned) but maybe never seen


@dataclass
class AlertState:
    rule: str
    subject: Subject
    firing: bool = False
    since: float | None = None  # firing since / pending since
    pending: bool = False
    pending_since: float | None = None  # levels: rising since
    value: Any = None
    level: int = -1  # levels: the level notified last (-1: normal)
    target: int = -1  # levels: the level pending for ``for``
    last_seen: float | None = None  # stale
    bad: dict[str, float] = field(default_factory=dict)  # quality: metric → bad since
    error: str | None = None
    points: deque[tuple[float, float]] = field(default_factory=deque)  # rate: (ts, value)
    # rate: the window's lowest and highest value at the front of two monotonic queues
    # (the points that can still become the lowest / highest), made at the first point
    lows: deque[tuple[float, float]] | None = None
    highs: deque[tuple[float, float]] | None = None
    change: float | None = None


_STALE, _QUALITY, _THRESHOLD, _LEVELS, _RATE = range(5)
_KINDS: dict[type, int] = {
    StaleRule: _STALE,
    QualityRule: _QUALITY,
    ThresholdRule: _THRESHOLD,
    LevelsRule: _LEVELS,
    RateRule: _RATE,
}


_Slot = list[Any]
"""A rule a series' readings drive: [kind (_STALE, ...: faster than isinstance), the rule,
its alert state for the series (None until a reading creates it, exactly when the full
path would), extra (threshold: (above, below); levels: the device's bands), state key]."""


def fingerprint(rule: str, subject: Subject) -> str:
    key = "\x1f".join((rule, subject.gateway, subject.device or "", subject.metric or ""))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _iso(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    """Numbers, and booleans as 1 / 0 (``mains_ok: true``); anything else is skipped."""
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


class Engine:
    def __init__(
        self,
        rules: RuleSet,
        now: Callable[[], float],
        timezone_of: Callable[[str | None], ZoneInfo],
        max_reading_age: float = 600.0,
    ) -> None:
        self.rules = rules
        self.now = now
        self.timezone_of = timezone_of
        self.max_reading_age = max_reading_age
        self.started = now()
        self.gateways: dict[str, GatewayFacts] = {}
        self.profiles: dict[tuple[str, str], str] = {}
        self.states: dict[tuple[str, Subject], AlertState] = {}
        # gateway -> (device, metric) -> the rules its readings drive, each with its alert
        # state (``_cached`` entries in all); gateway -> its offline rules with their state
        # keys. Both depend on the rules, the gateway's site and its devices' profiles, and
        # hold states: dropped (``_forget``) whenever one of those changes or a state is
        # deleted.
        self._cache: dict[str, dict[tuple[str, str], list[_Slot]]] = {}
        self._cached = 0
        self._offline_cache: dict[str, tuple[tuple[OfflineRule, tuple[str, Subject]], ...]] = {}

    def _forget(self, gateway: str | None = None) -> None:
        """Drop the cached rules and states of ``gateway`` (None: of every gateway)."""
        if gateway is None:
            self._cache.clear()
            self._cached = 0
            self._offline_cache.clear()
        else:
            self._cached -= len(self._cache.pop(gateway, ()))
            self._offline_cache.pop(gateway, None)

    # rules

    def set_rules(self, rules: RuleSet) -> list[Transition]:
        """Swap the rules; alerts of rules removed (or changed kind) resolve."""
        old = self.rules
        self.rules = rules
        self._forget()
        out = []
        for key, state in list(self.states.items()):
            rule = rules.by_name.get(state.rule)
            before = old.by_name.get(state.rule)
            gone = rule is None or (before is not None and before.kind != rule.kind)
            if not gone and rule is not None and not self._still_matches(rule, state.subject):
                gone = True
            if not gone and isinstance(rule, LevelsRule):  # fewer levels than before
                state.level = min(state.level, len(rule.levels) - 1)
                state.pending, state.target = False, -1
            if gone:
                if state.firing and before is not None:
                    out.append(self._transition("resolved", before, state))
                elif state.firing:
                    out.append(self._resolved_unknown(state))
                del self.states[key]
        self._forget()  # no cached slot may keep a deleted state
        return out

    def _still_matches(self, rule: Rule, subject: Subject) -> bool:
        where = self._where(subject.gateway, subject.device, subject.metric)
        return matches(rule.match, where, ignore_metric=subject.metric is None)

    # what central hears

    def heard(self, gateway: str, site: str | None) -> list[Transition]:
        """Any accepted message from ``gateway``."""
        facts = self._facts(gateway, site)
        now = facts.last_heard = self.now()
        facts.dead_since = None
        out: list[Transition] = []
        for rule, key in self._offline_rules(gateway, facts):
            # heard just now: the gateway is online, unless 'after' is 0; only a firing
            # offline alert changes (it resolves)
            if rule.after <= 0 or ((state := self.states.get(key)) is not None and state.firing):
                out += self._offline(rule, gateway, now)
        return out

    def state(
        self,
        gateway: str,
        site: str | None,
        online: bool,
        devices: Iterable[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> list[Transition]:
        """A birth (``online`` with (device, profile) pairs) or a death."""
        now = self.now()
        facts = self._facts(gateway, site)
        if online:
            facts.last_heard, facts.dead_since = now, None
            for key in [k for k in self.profiles if k[0] == gateway]:
                del self.profiles[key]
            for device, profile in devices:
                self.profiles[(gateway, device)] = profile
            self._forget(gateway)
            for device, _ in devices:
                self._known_device(gateway, device, now)
        else:
            facts.dead_since, facts.reason = now, reason
        return self._check_offline(gateway)

    def inventory(
        self,
        gateways: Iterable[dict[str, Any]],
        devices: Iterable[tuple[str, str, str | None]] = (),
    ) -> list[Transition]:
        """The registry's view: gateway rows (id, site, status, last_seen, created) and
        (gateway, device, profile) from births. Registered gateways count as known."""
        now = self.now()
        for row in gateways:
            gateway = row["id"]
            facts = self._facts(gateway, row.get("site"))
            facts.registered = row.get("created") or facts.registered
            seen = row.get("last_seen")
            if seen is not None and (facts.last_heard is None or seen > facts.last_heard):
                facts.last_heard = seen
        for gateway, device, profile in devices:
            if profile and self.profiles.get((gateway, device)) != profile:
                self.profiles[(gateway, device)] = profile
                self._forget(gateway)
            self._known_device(gateway, device, now)
        return []

    def _facts(self, gateway: str, site: str | None) -> GatewayFacts:
        facts = self.gateways.get(gateway)
        if facts is None:
            facts = self.gateways[gateway] = GatewayFacts(site=site)
        elif site and facts.site != site:
            facts.site = site
            self._forget(gateway)
        return facts

    def _known_device(self, gateway: str, device: str, now: float) -> None:
        """A device we know of (from a birth): stale rules start watching it."""
        where = self._where(gateway, device, None)
        for rule in self.rules.rules:
            if isinstance(rule, StaleRule) and matches(rule.match, where, ignore_metric=True):
                state = self._state(rule, Subject(gateway, device))
                if state.last_seen is None:
                    state.last_seen = max(now, self.started)

    def _where(self, gateway: str, device: str | None, metric: str | None) -> Where:
        facts = self.gateways.get(gateway)
        profile = self.profiles.get((gateway, device)) if device else None
        return Where(gateway, device, facts.site if facts else None, profile, metric)

    def _slots(self, gateway: str, device: str, metric: str) -> list[_Slot]:
        """The rules a reading of (gateway, device, metric) drives, in the rules' order,
        each with the series' alert state if it exists; cached."""
        key = (device, metric)
        found = self._cache.get(gateway, {}).get(key)
        if found is not None:
            return found
        where = self._where(gateway, device, metric)
        found = []
        for rule in self.rules.rules:
            if isinstance(rule, OfflineRule) or not matches(rule.match, where):
                continue
            extra: Any = None
            if isinstance(rule, StaleRule | QualityRule):
                subject = Subject(gateway, device)
                kind = _STALE if isinstance(rule, StaleRule) else _QUALITY
            else:
                subject = Subject(gateway, device, metric)
                if isinstance(rule, ThresholdRule):
                    kind, extra = _THRESHOLD, (rule.above, rule.below)
                elif isinstance(rule, LevelsRule):
                    kind, extra = _LEVELS, list(rule.bands(device).values())
                else:
                    kind = _RATE
            state_key = (rule.name, subject)
            found.append([kind, rule, self.states.get(state_key), extra, state_key])
        if self._cached >= RULE_CACHE_MAX:  # bounded, whatever gateways send
            self._cache.clear()
            self._cached = 0
        cache = self._cache.get(gateway)
        if cache is None:
            cache = self._cache[gateway] = {}
        cache[key] = found
        self._cached += 1
        return found

    def _slot_state(self, slot: _Slot) -> AlertState:
        """The slot's alert state, created now if it does not exist yet."""
        key = slot[4]
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = AlertState(*key)
        slot[2] = state
        return state

    def _offline_rules(
        self, gateway: str, facts: GatewayFacts
    ) -> tuple[tuple[OfflineRule, tuple[str, Subject]], ...]:
        """The offline rules matching ``gateway`` with their state keys; cached."""
        found = self._offline_cache.get(gateway)
        if found is None:
            where = Where(gateway, site=facts.site)
            found = tuple(
                (rule, (rule.name, Subject(gateway)))
                for rule in self.rules.rules
                if isinstance(rule, OfflineRule) and matches(rule.match, where)
            )
            if len(self._offline_cache) >= RULE_CACHE_MAX:
                self._offline_cache.clear()
            self._offline_cache[gateway] = found
        return found

    def _state(self, rule: Rule, subject: Subject) -> AlertState:
        key = (rule.name, subject)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = AlertState(rule.name, subject)
        return state

    # readings

    def reading(self, gateway: str, site: str | None, r: Reading) -> list[Transition]:
        """One reading of a telemetry message from ``gateway``."""
        return self.readings(gateway, site, (r,))

    def readings(
        self,
        gateway: str,
        site: str | None,
        readings: Iterable[Reading],
        out: list[Transition] | None = None,
    ) -> list[Transition]:
        """The readings of one telemetry message from ``gateway``, in order; appends the
        transitions they cause to ``out`` (also when a reading fails) and returns it.

        The hot path of the engine (every reading central receives): rules and alert
        states come from the cache, and a reading that changes nothing in its alert
        (the common case: below a threshold, not firing, nothing pending) only records
        its value. Anything else takes the full path below (``_threshold``, ...)."""
        if out is None:
            out = []
        if site and (gateway not in self.gateways or self.gateways[gateway].site != site):
            self._facts(gateway, site)
        cache = self._cache.get(gateway) or {}
        max_age = self.max_reading_age
        isnan = math.isnan
        now = self.now()  # one clock read per message
        for r in readings:
            slots = cache.get((r.device, r.metric))
            if slots is None:
                slots = self._slots(gateway, r.device, r.metric)
                cache = self._cache[gateway]  # made (or emptied when full) by _slots
            if not slots:
                continue
            ts = r.ts / 1000.0
            fresh = now - ts <= max_age
            quality = r.quality
            number: float | None = None
            if fresh and quality == "good":
                value = r.value
                if type(value) is float:
                    number = None if isnan(value) else value
                elif type(value) is int:
                    number = float(value)
                else:
                    number = _number(value)
            for slot in slots:
                kind, rule, state, extra, _ = slot
                if kind == _STALE:
                    if state is None:
                        state = self._slot_state(slot)
                    state.last_seen = now
                    if state.firing:
                        out.append(self._transition("resolved", rule, state))
                elif not fresh:
                    continue
                elif kind == _QUALITY:
                    if state is None:
                        state = self._slot_state(slot)
                    if quality != "bad" and not state.bad and not state.firing:
                        state.error = None  # good, and was good
                    else:
                        out += self._quality(
                            rule, state, r.metric, quality=quality, error=r.error, now=now
                        )
                elif number is None:
                    continue
                elif kind == _THRESHOLD:
                    if state is None:
                        state = self._slot_state(slot)
                    above, below = extra
                    if (
                        state.firing
                        or state.pending
                        or (number > above if above is not None else number < below)
                    ):
                        out += self._threshold(rule, state, number, now)
                    else:  # not beyond, and nothing pending or firing: no change
                        state.value, state.since = number, None
                elif kind == _LEVELS:
                    if state is None:
                        state = self._slot_state(slot)
                    if state.level < 0 and number < extra[0]:  # below every band, normal
                        state.value, state.pending, state.target = number, False, -1
                    else:
                        out += self._levels(rule, state, number, now, extra)
                else:
                    if state is None:
                        state = self._slot_state(slot)
                    out += self._rate(rule, state, number, ts)
        return out

    def _threshold(
        self, rule: ThresholdRule, state: AlertState, value: float, now: float
    ) -> list[Transition]:
        state.value = value
        if rule.above is not None:
            beyond = value > rule.above
            clear = value < rule.clear_below if rule.clear_below is not None else not beyond
        else:
            assert rule.below is not None
            beyond = value < rule.below
            clear = value > rule.clear_above if rule.clear_above is not None else not beyond
        if state.firing:
            if clear:
                return [self._transition("resolved", rule, state)]
            return []
        if not beyond:
            state.pending, state.since = False, None
            return []
        if not state.pending:
            state.pending, state.since = True, now
        if now - (state.since or now) >= rule.for_:
            return [self._transition("firing", rule, state)]
        return []

    def _levels(
        self, rule: LevelsRule, state: AlertState, value: float, now: float, bands: list[float]
    ) -> list[Transition]:
        """``bands``: the rule's marks for the state's device, lowest first."""
        state.value = value
        target = -1
        for i, line in enumerate(bands):
            if value >= line:
                target = i
        if target > state.level:
            if not state.pending:
                state.pending, state.pending_since = True, now
            state.target = target
            if now - (state.pending_since or now) >= rule.for_:
                return [self._set_level(rule, state, target)]
            return []
        state.pending, state.target = False, -1
        level = state.level
        while level >= 0 and value < bands[level] - rule.hysteresis:
            level -= 1
        if level < state.level:
            return [self._set_level(rule, state, level)]
        return []

    def _set_level(self, rule: LevelsRule, state: AlertState, level: int) -> Transition:
        state.pending, state.target = False, -1
        was_firing = state.firing
        if level < 0:  # resolved: its labels are those of the last level notified
            resolved = self._transition("resolved", rule, state)
            state.level = -1
            return resolved
        state.level = level
        if not was_firing:
            return self._transition("firing", rule, state)
        return self._transition("changed", rule, state)

    def _rate(self, rule: RateRule, state: AlertState, value: float, ts: float) -> list[Transition]:
        if state.points and ts <= state.points[-1][0]:
            return []  # out of order or a redelivery
        point = (ts, value)
        state.points.append(point)
        lows, highs = state.lows, state.highs
        if lows is None or highs is None:
            lows, highs = state.lows, state.highs = deque(), deque()
        while lows and lows[-1][1] >= value:
            lows.pop()
        lows.append(point)
        while highs and highs[-1][1] <= value:
            highs.pop()
        highs.append(point)
        state.value = value
        return self._rate_check(rule, state, ts)

    def _rate_check(self, rule: RateRule, state: AlertState, upto: float) -> list[Transition]:
        points, lows, highs = state.points, state.lows, state.highs
        oldest = upto - rule.window
        while points and points[0][0] < oldest:
            gone = points.popleft()
            if lows and lows[0] is gone:  # lows, highs: ordered subsets of points
                lows.popleft()
            if highs and highs[0] is gone:
                highs.popleft()
        holds = False
        if len(points) >= 2 and lows and highs:  # the latest point is in both
            latest = points[-1][1]
            up, down = latest - lows[0][1], highs[0][1] - latest  # the window's min, max
            if rule.increase is not None and up >= rule.increase:
                holds, state.change = True, up
            elif rule.decrease is not None and down >= rule.decrease:
                holds, state.change = True, -down
        if holds and not state.firing:
            return [self._transition("firing", rule, state)]
        if not holds and state.firing:
            return [self._transition("resolved", rule, state)]
        return []

    def _quality(
        self,
        rule: QualityRule,
        state: AlertState,
        metric: str,
        *,
        quality: str,
        error: str | None,
        now: float,
    ) -> list[Transition]:
        if quality == "bad":
            state.bad.setdefault(metric, now)
            state.error = error or state.error
        else:
            state.bad.pop(metric, None)
        return self._quality_check(rule, state, now)

    def _quality_check(self, rule: QualityRule, state: AlertState, now: float) -> list[Transition]:
        if state.bad:
            since = min(state.bad.values())
            if not state.firing and now - since >= rule.after:
                return [self._transition("firing", rule, state)]
            return []
        state.error = None
        if state.firing:
            return [self._transition("resolved", rule, state)]
        return []

    # time

    def tick(self) -> list[Transition]:
        now = self.now()
        out: list[Transition] = []
        for offline in self.rules.rules:
            if isinstance(offline, OfflineRule):
                for gateway in list(self.gateways):
                    out += self._offline(offline, gateway, now)
        # every alert state, in order; the kind of each rule looked up once per tick
        kinds: dict[str, tuple[int, Any]] = {
            rule.name: (_KINDS.get(type(rule), -1), rule) for rule in self.rules.rules
        }
        windows: dict[tuple[str, ZoneInfo], float | None] = {}  # stale schedules, this tick
        for state in list(self.states.values()):
            kind, rule = kinds.get(state.rule, (-1, None))
            if kind == _THRESHOLD:
                if state.pending and not state.firing and now - (state.since or now) >= rule.for_:
                    out.append(self._transition("firing", rule, state))
            elif kind == _LEVELS:
                if state.pending and now - (state.pending_since or now) >= rule.for_:
                    out.append(self._set_level(rule, state, state.target))
            elif kind == _STALE:
                if not state.firing:
                    out += self._stale(rule, state, now, windows)
            elif kind == _QUALITY:
                if state.bad or state.firing:
                    out += self._quality_check(rule, state, now)
                else:
                    state.error = None  # as _quality_check does
            elif kind == _RATE and state.firing:
                out += self._rate_check(rule, state, now)
        return out

    def _stale(
        self,
        rule: StaleRule,
        state: AlertState,
        now: float,
        windows: dict[tuple[str, ZoneInfo], float | None],
    ) -> list[Transition]:
        """``windows``: (rule, timezone) -> when its schedule's window opened, at ``now``."""
        if state.firing:
            return []
        since = state.last_seen if state.last_seen is not None else self.started
        if rule.schedule is not None:
            facts = self.gateways.get(state.subject.gateway)
            tz = self.timezone_of(facts.site if facts else None)
            if rule.schedule.timezone:
                from central.alerts.schedule import zone

                tz = zone(rule.schedule.timezone) or tz
            key = (rule.name, tz)
            if key in windows:
                opened = windows[key]
            else:
                opened = windows[key] = rule.schedule.window_start(now, tz)
            if opened is None:
                return []
            since = max(since, opened)
        if now - since >= rule.after:
            return [self._transition("firing", rule, state)]
        return []

    def _check_offline(self, gateway: str) -> list[Transition]:
        now = self.now()
        out: list[Transition] = []
        for rule, _ in self._offline_rules(gateway, self.gateways[gateway]):
            out += self._offline(rule, gateway, now)
        return out

    def _offline(self, rule: OfflineRule, gateway: str, now: float) -> list[Transition]:
        facts = self.gateways[gateway]
        if not matches(rule.match, Where(gateway, site=facts.site)):
            return []
        subject = Subject(gateway)
        key = (rule.name, subject)
        state = self.states.get(key)
        reason = None
        if facts.dead_since is not None:
            if now - facts.dead_since >= rule.for_:
                reason = f"the gateway said goodbye ({facts.reason or 'connection lost'})"
        elif facts.last_heard is not None:
            if now - facts.last_heard >= rule.after:
                reason = f"no message for over {format_duration(rule.after)}"
        elif now - max(min(facts.registered or now, now), self.started) >= rule.after:
            reason = "registered but never seen"
        if reason is not None:
            if state is None or not state.firing:
                state = self._state(rule, subject)
                state.error = reason
                state.last_seen = facts.last_heard
                return [self._transition("firing", rule, state)]
            return []
        if state is not None and state.firing:
            state.last_seen = facts.last_heard
            return [self._transition("resolved", rule, state)]
        return []

    # incidents from before a restart

    def restore(self, rule_name: str, subject: Subject, level: str | None, value: Any) -> bool:
        """Mark an alert as already firing (an open incident from before a restart).
        False when its rule is gone or no longer covers the subject."""
        rule = self.rules.by_name.get(rule_name)
        if rule is None or not self._still_matches(rule, subject):
            return False
        state = self._state(rule, subject)
        state.firing, state.value = True, value
        if isinstance(rule, LevelsRule):
            names = list(rule.bands(subject.device or ""))
            state.level = names.index(level) if level in names else 0
        if isinstance(rule, StaleRule):
            state.last_seen = None
        return True

    # building transitions

    def _transition(self, change: Change, rule: Rule, state: AlertState) -> Transition:
        now = self.now()
        since = state.since
        if change == "firing":
            state.firing, state.pending, state.since = True, False, now
            since = now
        elif change == "resolved":
            state.firing, state.pending, state.since = False, False, None
        level = None
        severity = rule.severity
        threshold: float | None = None
        if isinstance(rule, LevelsRule):
            bands = rule.bands(state.subject.device or "")
            if state.level >= 0:
                level = list(bands)[state.level]
                severity = rule.severity_of(level)
                threshold = bands[level]
        elif isinstance(rule, ThresholdRule):
            threshold = rule.above if rule.above is not None else rule.below
        subject = state.subject
        facts = self.gateways.get(subject.gateway)
        site = facts.site if facts else None
        labels = {"alertname": rule.name, "severity": severity, "gateway": subject.gateway}
        if site:
            labels["site"] = site
        if subject.device:
            labels["device"] = subject.device
        if subject.metric:
            labels["metric"] = subject.metric
        if level:
            labels["level"] = level
        labels.update(rule.labels)
        fields: dict[str, Any] = {
            "rule": rule.name,
            "severity": severity,
            "gateway": subject.gateway,
            "site": site or "",
            "device": subject.device or "",
            "metric": subject.metric or "",
            "profile": self.profiles.get((subject.gateway, subject.device or ""), ""),
            "value": show(state.value),
            "since": _iso(since),
            "threshold": show(threshold),
            "level": level or "",
            "change": show(state.change),
            "window": format_duration(getattr(rule, "window", 0.0)),
            "after": format_duration(getattr(rule, "after", 0.0)),
            "last_seen": _iso(state.last_seen),
            "reason": state.error or "",
            "error": state.error or "",
        }
        annotations = {k: render(t, fields) for k, t in rule.annotations.items()}
        return Transition(
            change=change,
            rule=rule.name,
            subject=subject,
            fingerprint=fingerprint(rule.name, subject),
            at=now,
            labels=labels,
            annotations=annotations,
            value=state.value,
            level=level,
        )

    def _resolved_unknown(self, state: AlertState) -> Transition:
        state.firing = False
        return Transition(
            change="resolved",
            rule=state.rule,
            subject=state.subject,
            fingerprint=fingerprint(state.rule, state.subject),
            at=self.now(),
            labels={},
            annotations={},
            value=state.value,
        )
