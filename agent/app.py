"""The running agent: pollers → disk buffer → MQTT, plus birth, health and commands.

Readings go into the buffer as they are sampled; the committer writes them to
disk at most once per ``buffer.commit_interval``; the pump hands committed
readings to the MQTT session, at most ``mqtt.window`` messages in flight, and
acknowledges them in the buffer when the PUBACK arrives. On every connect the
buffer is split: the pump then alternates a batch of fresh readings (sampled
since the connect) with a batch of backlog (oldest first), so live data keeps
flowing while hours of outage drain.
"""

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

import wire
from agent import vitals
from agent.buffer import Buffer, Item
from agent.clock import Clock, SystemClock
from agent.commands import CommandError, run_command
from agent.config import AgentConfig, load_config, redacted
from agent.devices import Device, build_devices
from agent.drivers import EventOut, Sample, StreamDriver
from agent.mqtt import MqttSession
from agent.poller import Poller
from agent.remote import Push, RemoteStore, build_pushed, parse_push
from agent.sdnotify import Notifier
from wire.configfile import ConfigError

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = wire.MAX_PAYLOAD_BYTES - 4096


def reading_body(device: str, ts: int, sample: Sample) -> bytes:
    """One reading as compact JSON, as it sits in the buffer and in a telemetry batch."""
    value = sample.value
    quality, error = sample.quality, sample.error
    if isinstance(value, float) and not math.isfinite(value):
        value, quality, error = None, "bad", f"not a finite number: {value}"
    return wire.encode_reading(
        device, sample.metric, value, ts, quality, error=error, unit=sample.unit
    )


@dataclass(frozen=True)
class _Confirm:
    """The token of a birth whose PUBACK confirms a pushed device list."""

    push_id: str


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        devices: Sequence[Device],
        buffer: Buffer,
        *,
        clock: Clock | None = None,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        remote: RemoteStore | None = None,
        push: Push | None = None,
        base_config: AgentConfig | None = None,
    ) -> None:
        self.config = config
        # agent.yaml as read (its own devices), under a device list pushed from central
        self.base_config = base_config or config
        self.remote = remote
        self.push = push  # the pushed device list in force, if any
        self._rollback_task: asyncio.Task[None] | None = None
        self.config_path = config_path
        self.buffer = buffer
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier({})
        self.gateway = config.gateway.id
        self.site = config.gateway.site
        self.started = time.monotonic()
        self.mqtt: MqttSession | None = None
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_commit = 0.0
        self._unsent: list[tuple[str, bytes, list[int]]] = []
        self._device_tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        # since start: readings and events buffered, items the broker acknowledged
        self.counts = {"readings": 0, "events": 0, "published": 0}
        self._use_devices(devices)

    def _use_devices(self, devices: Sequence[Device]) -> None:
        self.devices = list(devices)
        self.pollers = {
            d.id: Poller(d.driver, self._on_samples, self.clock, events=self._on_event)
            for d in self.devices
            if not isinstance(d.driver, StreamDriver)
        }

    # readings in

    def _on_samples(self, device: str, ts: int, samples: list[Sample]) -> None:
        if samples:
            self.buffer.add("telemetry", ts, [reading_body(device, ts, s) for s in samples])
            self.counts["readings"] += len(samples)
            self._dirty.set()

    def _on_event(self, device: str, event: EventOut) -> None:
        body = wire.encode_event_body(
            self.site, device, event.kind, ts=event.ts, data=event.data, error=event.error
        )
        self.buffer.add("events", event.ts, [body])
        self.counts["events"] += 1
        self._dirty.set()

    # buffer → broker

    async def _committer(self) -> None:
        interval = self.config.buffer.commit_interval
        while True:
            await self._dirty.wait()
            wait = self._last_commit + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            self._last_commit = time.monotonic()
            await asyncio.to_thread(self.buffer.commit)
            self._wake.set()

    async def _pump(self) -> None:
        assert self.mqtt is not None
        mqtt = self.mqtt
        window = self.config.mqtt.window
        batch = self.config.mqtt.batch_size
        fresh_turn = True
        while True:
            await self._wake.wait()
            self._wake.clear()
            while mqtt.connected.is_set() and mqtt.in_flight < window:
                if self._unsent:
                    topic, payload, ids = self._unsent[0]
                    if not mqtt.publish(topic, payload, token=ids):
                        self._wake_later()
                        break
                    self._unsent.pop(0)
                    continue
                events = self.buffer.take("events", 1, MAX_BATCH_BYTES)
                if events:
                    self._publish_event(events[0])
                    continue
                if self.buffer.backlog("telemetry"):
                    # live readings and the backlog take turns, one batch each
                    items = self.buffer.take("telemetry", batch, MAX_BATCH_BYTES, fresh=fresh_turn)
                    if not items:
                        items = self.buffer.take(
                            "telemetry", batch, MAX_BATCH_BYTES, fresh=not fresh_turn
                        )
                    fresh_turn = not fresh_turn
                else:
                    items = self.buffer.take("telemetry", batch, MAX_BATCH_BYTES)
                if not items:
                    break
                self._publish_telemetry(items)

    def _wake_later(self, delay: float = 0.5) -> None:
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    def _send(self, kind: str, payload: bytes, ids: list[int]) -> None:
        assert self.mqtt is not None
        topic = wire.topic(self.gateway, kind)
        if not self.mqtt.publish(topic, payload, token=ids):
            self._unsent.append((topic, payload, ids))
            self._wake_later()

    def _publish_telemetry(self, items: list[Item]) -> None:
        seq = self.buffer.next_seq()
        payload = wire.encode_telemetry(self.gateway, seq, self.site, (i.body for i in items))
        self._send("telemetry", payload, [i.id for i in items])

    def _publish_event(self, item: Item) -> None:
        seq = self.buffer.next_seq()
        payload = wire.encode_event(self.gateway, seq, item.body)
        self._send("events", payload, [item.id])

    def _on_acked(self, ids: "list[int] | _Confirm") -> None:
        if isinstance(ids, _Confirm):
            self._confirmed(ids.push_id)
            return
        self.buffer.ack(ids)
        self.counts["published"] += len(ids)
        self._dirty.set()
        self._wake.set()

    # state and health

    def birth(self) -> wire.State:
        return wire.State(
            gateway=self.gateway,
            seq=self.buffer.next_seq(),
            status="online",
            ts=self._now_ms(),
            site=self.site,
            agent_version=wire.__version__,
            profiles=sorted({d.config.profile for d in self.devices}),
            devices=[
                wire.DeviceInfo(
                    id=d.id,
                    profile=d.config.profile,
                    driver=d.driver.name,
                    interval=d.config.interval,
                    metrics=d.driver.value_types() or None,
                )
                for d in self.devices
            ],
        )

    def death(self, reason: str) -> wire.State:
        return wire.State(
            gateway=self.gateway,
            seq=0,
            status="offline",
            ts=self._now_ms(),
            site=self.site,
            reason=reason,
        )

    def health(self) -> wire.Health:
        stats = self.buffer.stats()
        now = self.clock.time()
        devices = {}
        for device_id, poller in self.pollers.items():
            since = poller.health.failing_since
            status: Literal["ok", "failing", "unknown"]
            if since is None and poller.health.polls == 0:
                status = "unknown"
            else:
                status = "failing" if since is not None else "ok"
            devices[device_id] = wire.DeviceStatus(
                status=status,
                failing_since=round(since * 1000) if since is not None else None,
                error=poller.health.last_error,
                skipped_ticks=poller.health.skipped_ticks,
                wrong_type=poller.health.wrong_type or None,
            )
        vital = vitals.collect(self.config.buffer.path)
        return wire.Health(
            gateway=self.gateway,
            seq=self.buffer.next_seq(),
            ts=self._now_ms(),
            site=self.site,
            uptime_s=round(time.monotonic() - self.started, 1),
            cpu_temp_c=vital.cpu_temp_c,
            load1=vital.load1,
            mem_used_pct=vital.mem_used_pct,
            disk_free_mb=vital.disk_free_mb,
            buffer_depth=stats.depth,
            buffer_oldest_age_s=(
                round(max(0.0, now - stats.oldest_ts / 1000), 1)
                if stats.oldest_ts is not None
                else None
            ),
            dropped=stats.dropped,
            devices=devices,
        )

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def _publish_birth(self) -> None:
        """The birth (retained); while a pushed device list awaits confirmation, its
        PUBACK confirms it."""
        assert self.mqtt is not None
        unconfirmed = self.push is not None and not self.push.confirmed
        token = _Confirm(self.push.id) if unconfirmed and self.push is not None else None
        self.mqtt.publish(
            wire.topic(self.gateway, "state"), wire.encode(self.birth()), token=token, retain=True
        )

    def _on_connect(self) -> None:
        assert self.mqtt is not None
        self._publish_birth()
        if self.buffer.split("telemetry"):
            log.info("draining the backlog oldest first while fresh readings keep flowing")
        self._publish_health()
        self._wake.set()

    def _publish_health(self) -> None:
        assert self.mqtt is not None
        if self.mqtt.connected.is_set():
            self.mqtt.publish(wire.topic(self.gateway, "health"), wire.encode(self.health()))

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health.interval)
            self._publish_health()

    async def _watchdog(self, period: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(period / 2)

    # commands

    def _on_command(self, topic: str, payload: bytes) -> None:
        task = asyncio.create_task(self._answer(payload), name="command")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer(self, payload: bytes) -> None:
        assert self.mqtt is not None
        reply = await run_command(self, payload)
        message = wire.CommandReply(
            gateway=self.gateway,
            seq=self.buffer.next_seq(),
            id=reply.id,
            ok=reply.ok,
            result=reply.result,
            error=reply.error,
        )
        try:
            data = wire.encode(message)
        except wire.WireError as exc:
            data = wire.encode(
                msgspec.structs.replace(message, ok=False, result=None, error=str(exc))
            )
        self.mqtt.publish(wire.topic(self.gateway, "cmd/reply"), data)

    async def poll_now(self, device: str | None) -> dict[str, Any]:
        if device is not None and device not in self.pollers:
            raise CommandError(f"poll-now: no polled device with id {device!r}")
        chosen = [self.pollers[device]] if device else list(self.pollers.values())
        at = self.clock.time()
        results = await asyncio.gather(*(p.poll(at) for p in chosen))
        return {
            p.device_id: [
                {"metric": s.metric, "value": s.value, "unit": s.unit, "quality": s.quality}
                | ({"error": s.error} if s.error else {})
                for s in samples
            ]
            for p, samples in zip(chosen, results, strict=True)
        }

    async def reload_config(self) -> dict[str, Any]:
        if self.config_path is None:
            raise CommandError("reload-config: the agent was not started from a config file")
        path = self.config_path
        try:
            base = await asyncio.to_thread(load_config, path)
            if self.push is not None and self.remote is not None:  # pushed devices stay
                config, devices = await asyncio.to_thread(
                    build_pushed, base, self.push, self.remote.profiles_dir(self.push)
                )
            else:
                config = base
                devices = await asyncio.to_thread(build_devices, config, str(path))
        except ConfigError as exc:
            log.warning("reload-config: kept the running config: %s", "; ".join(exc.problems))
            raise CommandError(
                "reload-config: kept the running config: " + "; ".join(exc.problems)
            ) from None
        restart = [
            name
            for name in ("gateway", "mqtt", "buffer", "log", "metrics")
            if getattr(config, name) != getattr(self.config, name)
        ]
        self.base_config = base
        await self._stop_devices()
        self.config = msgspec.structs.replace(
            self.config,
            devices=config.devices,
            profiles_dir=config.profiles_dir,
            health=config.health,
        )
        self._use_devices(devices)
        self._start_devices()
        log.info("reload-config: %d devices running", len(self.devices))
        if self.mqtt is not None and self.mqtt.connected.is_set():
            self._publish_birth()
        return {"devices": [d.id for d in self.devices], "restart_needed_for": restart}

    # device lists pushed from central (agent.remote)

    async def apply_config(self, command_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """Validate a pushed device list completely, then switch to it; a bad one changes
        nothing and the reply lists its problems."""
        if self.remote is None:
            raise CommandError("apply-config: remote_config.enabled is false on this gateway")
        store = self.remote
        try:
            push = parse_push(args, command_id, self.clock.time())
            folder = await asyncio.to_thread(store.stage, push)
            config, devices = await asyncio.to_thread(build_pushed, self.base_config, push, folder)
            await asyncio.to_thread(store.commit, push)
        except (ConfigError, OSError) as exc:
            await asyncio.to_thread(store.discard_staged)
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            log.warning("apply-config: kept the running devices: %s", "; ".join(problems))
            raise CommandError(
                "apply-config: kept the running devices: " + "; ".join(problems)
            ) from None
        await self._switch(config, devices, push)
        log.info("apply-config %s: %d devices running", push.id, len(self.devices))
        return {
            "applied": push.id,
            "devices": [d.id for d in self.devices],
            "profiles": sorted(push.profiles),
            "rollback_after": self.config.remote_config.rollback_after,
        }

    async def _switch(self, config: AgentConfig, devices: list[Device], push: Push | None) -> None:
        await self._stop_devices()
        self.config = msgspec.structs.replace(self.config, devices=config.devices)
        self.push = push
        self._use_devices(devices)
        self._start_devices()
        self._arm_rollback()
        if self.mqtt is not None:
            self._publish_birth()

    def _arm_rollback(self) -> None:
        if self._rollback_task is not None:
            self._rollback_task.cancel()
            self._rollback_task = None
        push = self.push
        if push is None or push.confirmed:
            return
        wait = push.applied_at + self.config.remote_config.rollback_after - self.clock.time()
        self._rollback_task = asyncio.create_task(self._rollback_later(push, wait), name="rollback")
        self._background.add(self._rollback_task)
        self._rollback_task.add_done_callback(self._background.discard)

    async def _rollback_later(self, push: Push, wait: float) -> None:
        await asyncio.sleep(max(0.0, wait))
        if self.push is not push or self.remote is None:
            return
        self._rollback_task = None
        log.warning(
            "apply-config %s: the broker confirmed nothing within %s: rolling back",
            push.id,
            self.config.remote_config.rollback_after,
        )
        previous = await asyncio.to_thread(self.remote.rollback)
        while True:
            try:
                if previous is None:
                    config = self.base_config
                    devices = await asyncio.to_thread(
                        build_devices, config, str(self.config_path or "agent.yaml")
                    )
                else:
                    config, devices = await asyncio.to_thread(
                        build_pushed, self.base_config, previous, self.remote.profiles_dir(previous)
                    )
                break
            except ConfigError as exc:
                log.error("rollback: %s can't be used: %s", previous and previous.id, exc)
                if previous is None:
                    return  # agent.yaml itself is broken now: keep what runs
                previous = await asyncio.to_thread(self.remote.rollback)
        await self._switch(config, devices, previous)
        log.info("rolled back: %d devices running", len(self.devices))

    def _confirmed(self, push_id: str) -> None:
        if self.push is None or self.push.id != push_id or self.push.confirmed:
            return
        self.push = msgspec.structs.replace(self.push, confirmed=True)
        if self._rollback_task is not None:
            self._rollback_task.cancel()
            self._rollback_task = None
        if self.remote is not None:
            remote = self.remote
            task = asyncio.create_task(asyncio.to_thread(remote.confirm, push_id), name="confirm")
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        log.info("apply-config %s: confirmed by the broker", push_id)

    def config_view(self) -> dict[str, Any]:
        return redacted(self.config)

    # lifecycle

    def _start_devices(self) -> None:
        self._device_tasks = [
            asyncio.create_task(p.run(), name=f"poll {p.device_id}") for p in self.pollers.values()
        ]
        for device in self.devices:
            if isinstance(device.driver, StreamDriver):
                self._device_tasks.append(
                    asyncio.create_task(self._stream(device), name=f"stream {device.id}")
                )

    async def _stop_devices(self) -> None:
        for task in self._device_tasks:
            task.cancel()
        await asyncio.gather(*self._device_tasks, return_exceptions=True)
        self._device_tasks = []

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.mqtt = MqttSession(
            self.config.mqtt,
            self.config.mqtt.client_id or self.gateway,
            loop,
            will=(wire.topic(self.gateway, "state"), wire.encode(self.death("connection lost"))),
            on_connect=self._on_connect,
            on_acked=self._on_acked,
            on_command=self._on_command,
            command_topic=wire.topic(self.gateway, "cmd"),
        )
        self.mqtt.start()
        log.info(
            "agent %s started: %d devices, broker %s, buffer %s",
            self.gateway,
            len(self.devices),
            self.config.mqtt.url,
            getattr(self.buffer, "path", "in memory"),
        )
        self._start_devices()
        service = [
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._pump(), name="pump"),
            asyncio.create_task(self._health_loop(), name="health"),
        ]
        if self.notifier.watchdog_s:
            service.append(
                asyncio.create_task(self._watchdog(self.notifier.watchdog_s), name="watchdog")
            )
        self._arm_rollback()  # a pushed device list still unconfirmed from before a restart
        self.notifier.ready(f"sampling {len(self.devices)} devices")
        self._wake.set()
        try:
            await stop.wait()
        finally:
            log.info("agent %s stopping", self.gateway)
            self.notifier.stopping()
            await self._stop_devices()
            for task in [*service, *self._background]:
                task.cancel()
            await asyncio.gather(*service, *self._background, return_exceptions=True)
            await asyncio.to_thread(self.buffer.commit)
            depth = self.buffer.stats().depth
            await self.mqtt.stop(
                last_words=(wire.topic(self.gateway, "state"), wire.encode(self.death("shutdown")))
            )
            await asyncio.to_thread(self.buffer.close)
            log.info("agent %s stopped; %d items left in the buffer", self.gateway, depth)

    async def _stream(self, device: Device) -> None:
        driver = device.driver
        assert isinstance(driver, StreamDriver)
        while True:
            try:
                await driver.open()
                await driver.stream(lambda event: self._on_event(device.id, event))
            except asyncio.CancelledError:
                await driver.close()
                raise
            except Exception as exc:
                log.warning("device %s: stream stopped: %s; restarting in 5s", device.id, exc)
                await driver.close()
                await asyncio.sleep(5)
