"""The running agent: pollers → disk buffer → MQTT, plus birth, health and commands."""

import asyncio
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import wire
from agent.buffer import Buffer, Item
from agent.clock import Clock, SystemClock
from agent.config import AgentConfig
from agent.devices import Device
from agent.drivers import EventOut, Sample, StreamDriver
from agent.mqtt import MqttSession
from agent.poller import Poller

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = wire.MAX_PAYLOAD_BYTES - 4096


def reading_body(device: str, ts: int, sample: Sample) -> bytes:
    """One reading as compact JSON, as it sits in the buffer and in a telemetry batch."""
    value = sample.value
    quality, error = sample.quality, sample.error
    if isinstance(value, float) and not math.isfinite(value):
        value, quality, error = None, "bad", f"not a finite number: {value}"
    doc: dict[str, Any] = {
        "device": device,
        "metric": sample.metric,
        "value": value,
        "ts": ts,
        "quality": quality,
    }
    if error is not None:
        doc["error"] = error
    if sample.unit is not None:
        doc["unit"] = sample.unit
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        devices: Sequence[Device],
        buffer: Buffer,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.devices = list(devices)
        self.buffer = buffer
        self.clock = clock or SystemClock()
        self.gateway = config.gateway.id
        self.site = config.gateway.site
        self.pollers = {
            d.id: Poller(d.driver, self._on_samples, self.clock)
            for d in self.devices
            if not isinstance(d.driver, StreamDriver)
        }
        self.started = time.monotonic()
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_commit = 0.0
        self.mqtt: MqttSession | None = None

    # readings in

    def _on_samples(self, device: str, ts: int, samples: list[Sample]) -> None:
        if samples:
            self.buffer.add("telemetry", ts, [reading_body(device, ts, s) for s in samples])
            self._dirty.set()

    def _on_event(self, device: str, event: EventOut) -> None:
        doc: dict[str, Any] = {
            "site": self.site,
            "device": device,
            "kind": event.kind,
            "ts": event.ts,
            "data": event.data,
        }
        if event.error is not None:
            doc["error"] = event.error
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()
        self.buffer.add("events", event.ts, [body])
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
            await asyncio.to_thread(self.buffer.commit)
            self._last_commit = time.monotonic()
            self._wake.set()

    async def _pump(self) -> None:
        assert self.mqtt is not None
        mqtt = self.mqtt
        window = self.config.mqtt.window
        while True:
            await self._wake.wait()
            self._wake.clear()
            while mqtt.in_flight < window:
                events = self.buffer.take("events", 1, MAX_BATCH_BYTES)
                if events:
                    self._publish_event(events[0])
                    continue
                items = self.buffer.take(
                    "telemetry", self.config.mqtt.batch_size, MAX_BATCH_BYTES
                )
                if not items:
                    break
                self._publish_telemetry(items)

    def _publish_telemetry(self, items: list[Item]) -> None:
        assert self.mqtt is not None
        seq = self.buffer.next_seq()
        head = (
            f'{{"v":1,"gateway":"{self.gateway}","seq":{seq},'
            f'"site":{json.dumps(self.site)},"readings":['
        )
        payload = head.encode() + b",".join(i.body for i in items) + b"]}"
        self.mqtt.publish(
            wire.topic(self.gateway, "telemetry"), payload, token=[i.id for i in items]
        )

    def _publish_event(self, item: Item) -> None:
        assert self.mqtt is not None
        seq = self.buffer.next_seq()
        payload = f'{{"v":1,"gateway":"{self.gateway}","seq":{seq},'.encode() + item.body[1:]
        self.mqtt.publish(wire.topic(self.gateway, "events"), payload, token=[item.id])

    def _on_acked(self, ids: list[int]) -> None:
        self.buffer.ack(ids)
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
            devices[device_id] = wire.DeviceStatus(
                status="failing" if since is not None else "ok",
                failing_since=round(since * 1000) if since is not None else None,
                error=poller.health.last_error,
            )
        return wire.Health(
            gateway=self.gateway,
            seq=self.buffer.next_seq(),
            ts=self._now_ms(),
            site=self.site,
            uptime_s=round(time.monotonic() - self.started, 1),
            buffer_depth=stats.depth,
            buffer_oldest_age_s=(
                round(now - stats.oldest_ts / 1000, 1) if stats.oldest_ts is not None else None
            ),
            dropped=stats.dropped,
            devices=devices,
        )

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def _on_connect(self) -> None:
        assert self.mqtt is not None
        self.mqtt.publish(
            wire.topic(self.gateway, "state"), wire.encode(self.birth()), retain=True
        )
        self._wake.set()

    async def _health_loop(self) -> None:
        assert self.mqtt is not None
        while True:
            await asyncio.sleep(self.config.health.interval)
            if self.mqtt.connected.is_set():
                self.mqtt.publish(wire.topic(self.gateway, "health"), wire.encode(self.health()))

    # commands

    def _on_command(self, topic: str, payload: bytes) -> None:
        assert self.mqtt is not None
        try:
            command = wire.decode("cmd", payload)
        except wire.WireError as exc:
            log.warning("ignored a malformed command: %s", exc)
            reply = wire.CommandReply(
                gateway=self.gateway, seq=self.buffer.next_seq(), id="?", ok=False, error=str(exc)
            )
        else:
            reply = self._run_command(command)
        self.mqtt.publish(wire.topic(self.gateway, "cmd/reply"), wire.encode(reply))

    def _run_command(self, command: wire.Command) -> wire.CommandReply:
        seq = self.buffer.next_seq()
        if command.name == "ping":
            return wire.CommandReply(
                gateway=self.gateway, seq=seq, id=command.id, ok=True, result="pong"
            )
        return wire.CommandReply(
            gateway=self.gateway,
            seq=seq,
            id=command.id,
            ok=False,
            error=f"unknown command {command.name!r}",
        )

    # lifecycle

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
        )
        self.mqtt.subscribe_commands(wire.topic(self.gateway, "cmd"))
        self.mqtt.start()
        log.info(
            "agent %s started: %d devices, broker %s",
            self.gateway,
            len(self.devices),
            self.config.mqtt.url,
        )
        tasks = [asyncio.create_task(p.run(), name=f"poll {p.device_id}") for p in self.pollers.values()]
        for device in self.devices:
            if isinstance(device.driver, StreamDriver):
                tasks.append(asyncio.create_task(self._stream(device), name=f"stream {device.id}"))
        service = [
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._pump(), name="pump"),
            asyncio.create_task(self._health_loop(), name="health"),
        ]
        self._wake.set()
        try:
            await stop.wait()
        finally:
            log.info("agent %s stopping", self.gateway)
            for task in tasks + service:
                task.cancel()
            await asyncio.gather(*tasks, *service, return_exceptions=True)
            await asyncio.to_thread(self.buffer.commit)
            await self.mqtt.stop(
                last_words=(wire.topic(self.gateway, "state"), wire.encode(self.death("shutdown")))
            )
            await asyncio.to_thread(self.buffer.close)

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
