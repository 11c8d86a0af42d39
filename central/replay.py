"""Replaying dead letters after a fix: ``pantau-central dead-letters replay`` and
``POST /api/v1/dead-letters/replay``.

A letter InfluxDB refused lines of (``influx_rejected``) has those lines written again;
any other letter goes through ingest's checks again (decode, the gateway's limits,
declared types are not known here) and its lines are written. A letter stored now is
deleted; one refused again stays, with the new reason. While InfluxDB can't take writes
(unreachable, 401, 429 ...) the replay stops and says so: nothing is lost, run it again.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

import wire
from central.config import CentralConfig
from central.influx import WriteError, Writer
from central.limits import Names
from central.lineprotocol import Encoder
from central.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["ReplayResult", "Replayer"]


@dataclass
class ReplayResult:
    stored: int = 0  # letters written to InfluxDB (or the registry) and deleted
    refused: int = 0  # letters refused again, kept with the new reason
    held: str | None = None  # why the replay stopped early (InfluxDB can't take writes)
    reasons: dict[str, int] = field(default_factory=dict)  # refused again, by reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "refused": self.refused,
            "held": self.held,
            "refused_reasons": self.reasons,
        }


class _Refused(Exception):
    def __init__(self, reason: str, detail: str, lines: list[str] | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.lines = reason, detail, lines


class Replayer:
    def __init__(self, config: CentralConfig, registry: Registry, writer: Writer) -> None:
        self.registry = registry
        self.writer = writer
        self.encoder = Encoder(config.influx.measurement)
        self.names = Names(config.limits)

    def replay(self, reason: str | None = None, gateway: str | None = None) -> ReplayResult:
        result = ReplayResult()
        after = 0
        while True:
            letters = self.registry.dead_letters_to_replay(reason, gateway, after)
            if not letters:
                return result
            for letter in letters:
                after = letter["id"]
                try:
                    self._one(letter)
                except _Refused as exc:
                    self.registry.refuse_again(letter["id"], exc.reason, exc.detail, exc.lines)
                    result.refused += 1
                    result.reasons[exc.reason] = result.reasons.get(exc.reason, 0) + 1
                    continue
                except WriteError as exc:  # held: InfluxDB can't take writes now
                    result.held = str(exc)
                    log.warning("dead-letter replay stopped: %s", exc)
                    return result
                self.registry.forget_dead_letter(letter["id"])
                result.stored += 1

    def _one(self, letter: dict[str, Any]) -> None:
        if letter["lines"]:
            self._write(letter["lines"].split("\n"))
            return
        topic, payload = letter["topic"], letter["payload"]
        parsed = wire.parse_topic(topic)
        if parsed is None:
            raise _Refused("bad_topic", "not a pantau/v1/<gateway>/<kind> topic")
        gateway, kind = parsed
        try:
            message = wire.decode(kind, payload, topic_gateway=gateway)
        except wire.WireError as exc:
            raise _Refused(exc.reason, exc.detail) from None
        site = self.registry.site_of(gateway)
        if kind == "telemetry":
            message, refusal = self.names.telemetry(message)
            self.registry.set_units(self.names.units)
            self.names.units.clear()
            if refusal is not None:
                raise _Refused("limit", refusal.detail)
            self._write(self.encoder.telemetry(message, site))
        elif kind == "events":
            why = self.names.event_ok(message)
            if why is not None:
                raise _Refused("limit", why)
            self._write(self.encoder.event(message, site))
        elif kind == "state":
            self.registry.state(message)
        elif kind == "health":
            self.registry.health(message)

    def _write(self, lines: list[str]) -> None:
        """Write ``lines``; raises WriteError while InfluxDB can't take writes, _Refused
        with the lines it refuses for their content (the others are stored)."""
        try:
            self.writer.write(("\n".join(lines) + "\n").encode())
            return
        except WriteError as exc:
            if exc.outcome.holds:
                raise
        refused: list[str] = []
        errors: list[str] = []
        for line in lines:  # one by one: only the refused ones stay dead letters
            try:
                self.writer.write((line + "\n").encode())
            except WriteError as exc:
                if exc.outcome.holds:
                    raise
                refused.append(line)
                errors.append(str(exc))
        if refused:
            detail = f"InfluxDB refused {len(refused)} of {len(lines)} lines again: {errors[0]}"
            raise _Refused("influx_rejected", detail, refused)
