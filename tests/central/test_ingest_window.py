"""mqtt.inflight_readings bounds what central holds unacknowledged, also when the broker
has a burst of messages waiting in central's read buffer (the QoS 1 fast path stops at
the window, not after a whole burst). Real mosquitto; InfluxDB unreachable, so nothing
is stored and acknowledged and the window fills."""

import time
import uuid
from pathlib import Path

from central.config import CentralConfig
from central.influx import V1Writer
from central.ingest import Ingest
from central.metrics import Metrics
from central.registry import Registry
from scripts.services import Mosquitto, free_port
from tests.central.helpers import Publisher, telemetry, wait_for
from wire.structs import convert

WINDOW = 100
PER_MESSAGE = 20


def test_a_burst_stops_at_the_inflight_window(tmp_path: Path, broker: Mosquitto) -> None:
    gateway = f"gw-win-{uuid.uuid4().hex[:8]}"
    config = convert(
        {
            "mqtt": {
                "url": broker.url,
                "client_id": f"central-{gateway}",
                "inflight_readings": WINDOW,
            },
            # nothing listens there: every write is held, nothing is acknowledged
            "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "unused"},
            "data_dir": str(tmp_path),
        },
        CentralConfig,
    )
    registry = Registry(tmp_path / "registry.db")
    ingest = Ingest(config, registry, V1Writer(config.influx), Metrics())
    publisher = Publisher(broker.port, f"pub-{gateway}")
    ingest.start()
    try:
        wait_for(ingest.connected.is_set, 10, "central subscribed")
        messages = 30  # 600 readings: six windows
        for seq in range(messages):
            publisher.publish(
                f"pantau/v1/{gateway}/telemetry",
                telemetry(gateway, seq + 1, seq * PER_MESSAGE, PER_MESSAGE),
            )
        publisher.wait_acked(messages)  # all at the broker, offered to central
        wait_for(lambda: ingest._inflight >= WINDOW, 10, "the window to fill")
        time.sleep(1.0)  # what a burst past the window would have taken by now
        # the window, plus the one packet paho reads per loop once it is full
        assert WINDOW <= ingest._inflight <= WINDOW + PER_MESSAGE
        assert ingest.hold_reason is not None  # held, not refused: nothing dead-lettered
        assert registry.dead_letters() == []
    finally:
        publisher.close()
        ingest.stop(timeout=2)
        registry.close()
