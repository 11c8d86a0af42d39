"""MQTT → validate → batch → InfluxDB, acknowledging each message only once it is stored.

The MQTT session is persistent (MQTT 5, ``clean_start`` off, a session expiry),
so while central is down or InfluxDB refuses writes the broker keeps the
messages. ``mqtt.inflight_readings`` bounds how many readings central holds
unacknowledged: when it is reached, the network thread stops reading from the
broker (which keeps the rest) until writes are acknowledged. A window counted in
readings, not messages, serves both a fleet of small messages (20 readings) and
the agent's full batches (500); ``mqtt.receive_maximum`` (messages) only has to be
large enough not to bind first.

Throughput (``bench/central_ingest``; ``docs/benchmarks.md``) is bound by the GIL:
validating the readings, formatting lines and the alert engine share one core.
``pantau-central run`` therefore raises the process's garbage-collection thresholds
(:func:`tune_gc`), and the line formatting caches per-batch prefixes.

Threads: paho's network thread decodes and validates each message and hands its
points to the batch queue; ``influx.writers`` writer threads take batches, write
them, then acknowledge the messages.

What an InfluxDB answer means comes from :func:`wire.retry.classify`. Unreachable,
timeouts, 5xx and 429 (honouring ``Retry-After``), and 401/403/404 (a wrong token, a
missing database: settings, not data) *hold*: the writer retries with backoff and
the messages stay unacknowledged at the broker; ``/readyz`` says why, the
``pantau_write_held_total`` metric counts it and the log says it once, and once on
recovery. 413 splits the batch. Any other refusal is the content's: the batch is
split by message, and a message still refused is bisected so that only the lines
InfluxDB refuses are dead-lettered (with the message) and the rest stored.
"""

import gc
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import wire
from central._mqttsock import BufferedClient
from central.config import CentralConfig
from central.influx import V1Writer, WriteError, Writer
from central.limits import Names
from central.lineprotocol import Encoder
from central.metrics import Metrics
from central.registry import Registry
from wire.broker import login
from wire.retry import Backoff
from wire.topics import subscription

log = logging.getLogger(__name__)


class _Stopping(Exception):
    """Central stops while a write is held: leave its messages unacknowledged."""


Observer = Callable[[str, Any], None]
"""Called with (kind, validated message) for every accepted uplink message."""

SUBSCRIBED_KINDS = ("telemetry", "events", "state", "health", "cmd/reply")

GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections while ingest runs (CPython's
default is 700). Every telemetry message allocates about 1,500 tracked objects (its
validated readings), so the default collects hundreds of times a second and, with
messages queued for the alert engine, keeps promoting them into full collections.
Measured with ``bench/central_ingest``: at 200k readings/s central's CPU went from
87 % to 73 % of a core, and with a backlog its throughput from ~140k to ~220k/s.
Refcounting still frees all of it at once; only reference cycles wait longer."""


def tune_gc() -> None:
    """Raise this process's garbage-collection thresholds for ingest (a process-wide
    setting, so the program's entry point calls it, not the library)."""
    young, middle, old = gc.get_threshold()
    if young:  # 0: collection disabled on purpose, leave it so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), max(middle, 50), max(old, 100))


@dataclass(slots=True)
class Pending:
    mid: int
    generation: int
    topic: str
    gateway: str
    lines: list[str]
    payload: bytes
    readings: int = 0
    events: int = 0
    received: float = 0.0  # time.monotonic() when it arrived (set by _enqueue)


class _RateLimitedLog:
    """One warning per reject reason per ``every`` seconds, saying how many it held back:
    a flood of bad payloads must not flood the log."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, reason: str, topic: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -self.every) < self.every:
            self._held[reason] = self._held.get(reason, 0) + 1
            return
        held = self._held.pop(reason, 0)
        more = f" (and {held} more like it since the last report)" if held else ""
        log.warning("rejected a message on %s: %s: %s%s", topic, reason, detail[:200], more)
        self._last[reason] = now


class Ingest:
    def __init__(
        self,
        config: CentralConfig,
        registry: Registry,
        writer: Writer,
        metrics: Metrics,
        observers: list[Observer] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.writer = writer
        self.metrics = metrics
        self.observers = observers if observers is not None else []
        self.encoder = Encoder(config.influx.measurement)
        self.names = Names(config.limits)
        self.connected = threading.Event()
        self.influx_ok = threading.Event()
        self._queue: deque[Pending] = deque()
        self._points = 0
        self._inflight = 0  # readings received, not yet stored and acknowledged
        self._retiring = False
        self._end_session = False
        self._last_message = time.monotonic()
        self.stale_subscriptions: list[str] = []  # unsubscribed when a session is resumed
        self._room = threading.Event()  # set when acknowledgements free the window
        self._cond = threading.Condition()
        self._stopping = False
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self._database_ready = config.influx.api != "v1" or not config.influx.create_database
        self._write_failing = False
        self._stop_event = threading.Event()
        self.backoff = Backoff(0.2, 10.0)  # InfluxDB writes held and retried
        self.reconnect_backoff = Backoff(1.0, 30.0)  # MQTT reconnects
        self._reconnects = 0
        self._network_thread: threading.Thread | None = None
        self._closing = threading.Event()  # set once pending writes are acknowledged
        self.hold_reason: str | None = None  # why writes are held: "401", "unreachable"...
        self.hold_detail: str | None = None
        self._held_since = 0.0
        self._reject_log = _RateLimitedLog()
        self._traceback_at = -60.0
        self.client = self._make_client()

    # MQTT

    def _make_client(self) -> BufferedClient:
        mqtt = self.config.mqtt
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=mqtt.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        login(client, mqtt)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # QoS 0 and 2 (no gateway sends them)
        client.on_qos1 = self._on_qos1
        # a burst of QoS 1 messages stops at the in-flight window, not BURST messages on
        client.qos1_room = lambda: self._inflight < self.config.mqtt.inflight_readings
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.config.mqtt.session_expiry)
        props.ReceiveMaximum = self.config.mqtt.receive_maximum
        return props

    def subscriptions(self) -> list[str]:
        """Every kind through the shared group, except ``cmd/reply``: each worker gets
        every reply, so the one whose API request sent the command sees its answer."""
        group = self.config.mqtt.shared_group
        prefix = f"$share/{group}/" if group else ""
        return [
            ("" if kind == "cmd/reply" else prefix) + subscription(kind)
            for kind in SUBSCRIBED_KINDS
        ]

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker %s refused central: %s", self.config.mqtt.url, rc)
            return
        with self._cond:
            self._generation += 1
        self._reconnects = 0
        log.info(
            "connected to %s (session %s)",
            self.config.mqtt.url,
            "resumed" if flags.session_present else "new",
        )
        if self._retiring:
            client.unsubscribe(self.subscriptions())  # no new share; take what is queued
            self.connected.set()
            return
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.subscriptions()])
        if flags.session_present:
            # a session kept from an earlier run: subscriptions it no longer wants (the
            # plain ones of a single worker, the group of earlier workers) would deliver
            # messages to this worker a second time
            stale = list(self.stale_subscriptions)
            if self.config.mqtt.shared_group:
                stale += [subscription(kind) for kind in SUBSCRIBED_KINDS]
            if stale:
                client.unsubscribe(stale)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        failed = [str(c) for c in codes if c.is_failure]
        if failed:
            log.error("broker refused our subscriptions: %s (check the broker's ACL)", failed)
            return
        log.info("subscribed to %s", ", ".join(self.subscriptions()))
        self.connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("disconnected from %s: %s; reconnecting", self.config.mqtt.url, rc)
        self.connected.clear()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_qos1(msg.topic, bytes(msg.payload), msg.mid)

    def _on_qos1(self, topic: str, payload: bytes, mid: int) -> None:
        self._last_message = time.monotonic()
        try:
            self.handle(topic, payload, mid)
        except Exception as exc:  # never let one message kill the network thread
            # a traceback once a minute at most: a flood of such messages must not flood
            # the log (the dead letters keep every one)
            now = time.monotonic()
            if now - self._traceback_at >= 60.0:
                self._traceback_at = now
                log.exception("unexpected error handling a message on %s", topic)
            detail = f"unexpected error: {type(exc).__name__}: {str(exc)[:200]}"
            self._dead_letter(topic, None, "internal", detail, payload)
            self.client.ack(mid, 1)

    def handle(self, topic: str, payload: bytes, mid: int) -> None:
        if self._stopping:
            return  # left unacknowledged: the persistent session keeps it for our return
        parsed = wire.parse_topic(topic)
        if parsed is None:
            self._dead_letter(
                topic, None, "bad_topic", "not a pantau/v1/<gateway>/<kind> topic", payload
            )
            self.client.ack(mid, 1)
            return
        gateway, kind = parsed
        self.metrics.count_message(kind)
        try:
            message = wire.decode(kind, payload, topic_gateway=gateway)
        except wire.WireError as exc:
            self._dead_letter(topic, gateway, exc.reason, exc.detail, payload)
            self.client.ack(mid, 1)
            return
        registry = self.registry
        if not registry.knows(gateway) and registry.gateway_count >= self.config.limits.gateways:
            detail = f"more than {self.config.limits.gateways} gateways (limits.gateways)"
            self._dead_letter(topic, gateway, "limit", detail, payload)
            self.client.ack(mid, 1)
            return
        claimed = getattr(message, "site", None)
        offered = claimed if claimed and self.names.name_ok(claimed) else None
        if registry.heard(gateway, offered, getattr(message, "seq", None)):
            log.info(
                "new gateway %s heard for the first time; site %s (first-heard: check it)",
                gateway,
                offered,
            )
        site = registry.site_of(gateway)  # the registry's word, never the payload's
        if claimed != site and claimed is not None:
            self.metrics.site_ignored()
            self._reject_log.warning(
                "site_ignored", topic, f"payload says site {claimed[:80]!r}, registry {site!r}"
            )
            message = msgspec.structs.replace(message, site=site)  # what observers see
        if kind == "telemetry":
            names = self.names
            message, refusal = names.telemetry(message)
            if names.units:  # a metric's unit new or changed
                registry.set_units(names.units)
                names.units.clear()
            if refusal is not None:
                self.metrics.refused_readings("limit", refusal.count)
                self._dead_letter(topic, gateway, "limit", refusal.detail, payload)
                if not message.readings:
                    self.client.ack(mid, 1)
                    return
        elif kind == "events":
            why = self.names.event_ok(message)
            if why is not None:
                self._dead_letter(topic, gateway, "limit", why, payload)
                self.client.ack(mid, 1)
                return
        elif kind == "state":
            message = self.names.declare(message)
        for observer in self.observers:
            try:
                observer(kind, message)
            except Exception:
                log.exception("observer failed on a %s message from %s", kind, gateway)
        if kind == "telemetry":
            encoder = self.encoder
            wrong = encoder.wrong_type
            lines = encoder.telemetry(message, site, self.names.declared(gateway))
            if encoder.wrong_type != wrong:
                self.metrics.refused_readings("wrong_type", encoder.wrong_type - wrong)
            self._enqueue(
                Pending(mid, self._generation, topic, gateway, lines, payload, readings=len(lines))
            )
            return
        if kind == "events":
            lines = self.encoder.event(message, site)
            self._enqueue(Pending(mid, self._generation, topic, gateway, lines, payload, events=1))
            return
        if kind == "health":  # the latest in the registry, the history in InfluxDB
            self.registry.health(message)
            lines = [self.encoder.health(message, site)]
            self._enqueue(Pending(mid, self._generation, topic, gateway, lines, payload))
            return
        if kind == "state":
            self.registry.state(message)
        self.client.ack(mid, 1)

    def _dead_letter(
        self,
        topic: str,
        gateway: str | None,
        reason: str,
        detail: str,
        payload: bytes,
        *,
        lines: list[str] | None = None,
    ) -> None:
        self.metrics.reject(reason)
        self._reject_log.warning(reason, topic, detail)
        try:
            self.registry.dead_letter(topic, gateway, reason, detail, payload, lines=lines)
        except Exception:
            log.exception("could not store a dead letter")

    # batching and writing

    def _enqueue(self, item: Pending) -> None:
        item.received = time.monotonic()
        with self._cond:
            self._queue.append(item)
            self._points += len(item.lines)
            self._inflight += len(item.lines)
            self.metrics.pending_points = self._points
            self.metrics.pending_messages = len(self._queue)
            if self._points >= self.config.influx.batch_size:
                self._cond.notify()

    def _take_batch(self) -> list[Pending]:
        influx = self.config.influx
        with self._cond:
            while True:
                if self._queue:
                    age = time.monotonic() - self._queue[0].received
                    if (
                        self._points >= influx.batch_size
                        or age >= influx.flush_interval
                        or self._stopping
                    ):
                        break
                    self._cond.wait(influx.flush_interval - age)
                elif self._stopping:
                    return []
                else:
                    self._cond.wait(0.5)
            batch: list[Pending] = []
            points = 0
            while self._queue and (
                not batch or points + len(self._queue[0].lines) <= influx.batch_size
            ):
                item = self._queue.popleft()
                batch.append(item)
                points += len(item.lines)
            self._points -= points
            self.metrics.pending_points = self._points
            self.metrics.pending_messages = len(self._queue)
            return batch

    def _writer_loop(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return
            self._write(batch)

    def _write(self, batch: list[Pending]) -> None:
        """Store a batch (holding while InfluxDB can't take it), then acknowledge it."""
        try:
            self._store(batch)
        except _Stopping:
            return  # unacknowledged: the broker sends it again after restart
        # one write for the batch's acknowledgements; an ack for a message of an earlier
        # connection could hit a new message that reuses its packet id: skip it, the
        # broker sends that message again
        generation = self._generation
        self.client.ack_many([item.mid for item in batch if item.generation == generation])
        with self._cond:
            self._inflight -= sum(len(item.lines) for item in batch)
        self._room.set()
        done = time.monotonic()
        self.metrics.acknowledged(done - item.received for item in batch)

    def _store(self, batch: list[Pending]) -> None:
        """A batch InfluxDB finds too large, or refuses for its content, is split by
        message; one message it still refuses is searched for its bad lines."""
        lines = batch[0].lines if len(batch) == 1 else [ln for i in batch for ln in i.lines]
        error = self._put(lines, sum(i.readings for i in batch), sum(i.events for i in batch))
        if error is None:
            return
        if len(batch) > 1:
            half = len(batch) // 2
            self._store(batch[:half])
            self._store(batch[half:])
            return
        item = batch[0]
        refused = self._refused_lines(item, item.lines)
        if refused:
            line_errors = "\n".join(f"{err}: {line}" for line, err in refused[:20])
            self._dead_letter(
                item.topic,
                item.gateway,
                "influx_rejected",
                f"InfluxDB refused {len(refused)} of {len(item.lines)} lines: {line_errors}",
                item.payload,
                lines=[line for line, _ in refused],
            )

    def _refused_lines(self, item: Pending, lines: list[str]) -> list[tuple[str, str]]:
        """Bisect ``lines`` of one message: what InfluxDB stores is stored, the lines it
        refuses for their content come back with the reason."""
        if len(lines) > 1:
            half = len(lines) // 2
            return self._refused_lines(item, lines[:half]) + self._refused_lines(item, lines[half:])
        n = len(lines)
        error = self._put(lines, n if item.readings else 0, n if item.events else 0)
        return [] if error is None else [(lines[0], str(error))]

    def _put(self, lines: list[str], readings: int, events: int) -> WriteError | None:
        """Write ``lines``, holding and retrying (:mod:`wire.retry`) while InfluxDB is
        unreachable, overloaded or refuses because of a setting; returns the error when
        the content is refused or too large, None once written."""
        body = ("\n".join(lines) + "\n").encode()
        attempt = 0
        while True:
            try:
                self._ensure_database()
                started = time.monotonic()
                self.writer.write(body)
            except WriteError as exc:
                if not exc.outcome.holds:
                    self.metrics.write_failed(exc.outcome.value)
                    return exc
                self.metrics.write_failed("held")
                self.metrics.hold(exc.reason)
                self._write_failing = True
                self._influx_failed(exc)
                if exc.status == 404 and self.config.influx.create_database:
                    self._database_ready = self.config.influx.api != "v1"  # create it again
                delay = self.backoff.delay(attempt, at_least=exc.retry_after)
                attempt += 1
                if self._stop_event.wait(delay) or self._stopping:
                    raise _Stopping from None
                continue
            self.metrics.wrote(len(lines), readings, events, time.monotonic() - started)
            if self._write_failing:
                self._write_failing = False
                self._influx_recovered()
            return None

    def _ensure_database(self) -> None:
        if self._database_ready:
            return
        if isinstance(self.writer, V1Writer):
            self.writer.create_database()
        self._database_ready = True

    def _influx_failed(self, exc: WriteError) -> None:
        self.influx_ok.clear()
        reason = exc.reason
        with self._cond:
            if self.hold_reason is None:
                self._held_since = time.monotonic()
            changed, self.hold_reason = self.hold_reason != reason, reason
            self.hold_detail = str(exc)[:300]
        if changed:  # once when it starts, once more if the cause changes
            log.error("%s; holding messages at the broker (unacknowledged) and retrying", exc)

    def _influx_recovered(self) -> None:
        with self._cond:
            reason, self.hold_reason, self.hold_detail = self.hold_reason, None, None
        self.metrics.hold(None)
        if reason is not None:
            log.info(
                "InfluxDB at %s is back after %.0fs of %s; writing what was held",
                self.config.influx.url,
                time.monotonic() - self._held_since,
                reason,
            )
        self.influx_ok.set()

    # lifecycle

    def start(self) -> None:
        for n in range(self.config.influx.writers):
            thread = threading.Thread(
                target=self._writer_loop, name=f"influx-writer-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        mqtt = self.config.mqtt
        self.client.connect_async(
            mqtt.host,
            mqtt.port,
            keepalive=round(mqtt.keepalive),
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._network_thread = threading.Thread(target=self._network, name="mqtt", daemon=True)
        self._network_thread.start()

    def _network(self) -> None:
        """paho's network loop; we own reconnecting, with :class:`wire.retry.Backoff`
        (the same as the agent's), so central and a city's gateways don't knock at the
        broker in lockstep after it restarts."""
        client = self.client
        while not self._closing.is_set():
            try:
                client.reconnect()
                rc = paho.MQTT_ERR_SUCCESS
                window = self.config.mqtt.inflight_readings
                # paho drops a connection it has read nothing from for a keepalive:
                # while the window is full, read one packet this often
                trickle = max(1.0, self.config.mqtt.keepalive / 3)
                last_read = time.monotonic()
                while rc == paho.MQTT_ERR_SUCCESS and not self._closing.is_set():
                    if self._inflight < window or time.monotonic() - last_read >= trickle:
                        rc = client.loop(timeout=0.5 if self._inflight < window else 0.0)
                        last_read = time.monotonic()
                        continue
                    # the window is full: read nothing until writes are acknowledged
                    # (the broker holds the rest); keep sending acks and pings
                    self._room.clear()
                    rc = client.loop_write()
                    if rc == paho.MQTT_ERR_SUCCESS:
                        rc = client.loop_misc()
                    if self._inflight >= window:
                        self._room.wait(0.05)
            except (OSError, ssl.SSLError, ValueError) as exc:
                if self._reconnects == 0:
                    log.warning("cannot connect to %s: %s", self.config.mqtt.url, exc)
            except Exception:  # never let the network thread die
                log.exception("MQTT network loop failed")
            if self._closing.is_set():
                break
            self._closing.wait(self.reconnect_backoff.delay(self._reconnects))
            self._reconnects += 1

    def retire(self, quiet: float = 3.0, timeout: float = 600.0) -> None:
        """A worker leaving the group for good (``--workers`` went down): take no new
        share, store what the broker kept for this session, then end the session, so the
        broker stops handing it messages nobody would read."""
        self._retiring = True
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.monotonic() - self._last_message
            if self.connected.is_set() and idle >= quiet and self._inflight == 0:
                break
            time.sleep(0.2)
        self._end_session = True
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending (acknowledging it), then disconnect."""
        with self._cond:
            self._stopping = True
            self._stop_event.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._closing.set()
        if self._end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0  # the broker forgets this session
            self.client.disconnect(properties=props)
        else:
            self.client.disconnect()
        if self._network_thread is not None:
            self._network_thread.join(5)
        self.registry.flush()

    def probe_influx(self) -> bool:
        """Ping InfluxDB (housekeeping calls this every few seconds, and at start) so
        ``/readyz`` tells the truth even while no message arrives."""
        try:
            self.writer.ping()
        except WriteError as exc:
            self._influx_failed(exc)
            return False
        if not self._write_failing:
            self._influx_recovered()
        return True

    @property
    def influx_up(self) -> bool:
        return self.influx_ok.is_set() and not self._write_failing

    @property
    def overloaded(self) -> bool:
        return self._points > self.config.influx.max_pending

    @property
    def ready(self) -> bool:
        """Connected to the broker, InfluxDB answering and taking writes, not overloaded."""
        return self.connected.is_set() and self.influx_up and not self.overloaded
