"""One suite over both buffer backends (in the manner of Telegraf's models/buffer_test.go)."""

import logging
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.buffer import ROW_OVERHEAD, Buffer, MemoryBuffer, SqliteBuffer

MakeBuffer = Callable[..., Buffer]


@pytest.fixture(params=["memory", "sqlite"])
def make_buffer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeBuffer]:
    opened: list[Buffer] = []

    def _make(max_items: int | None = None, max_bytes: int | None = None) -> Buffer:
        if request.param == "memory":
            buf: Buffer = MemoryBuffer(max_items, max_bytes)
        else:
            buf = SqliteBuffer(tmp_path / "buffer.db", max_items, max_bytes)
        opened.append(buf)
        return buf

    yield _make
    for buf in opened:
        try:
            buf.close()
        except sqlite3.ProgrammingError:
            pass  # closed by the test


def body(n: int) -> bytes:
    return f'{{"n":{n}}}'.encode()


def numbers(items: list) -> list[int]:
    return [int(i.body[5:-1]) for i in items]


def fill(buf: Buffer, count: int, start: int = 0, kind: str = "telemetry") -> None:
    buf.add(kind, 1000 + start, [body(n) for n in range(start, start + count)])
    buf.commit()


def test_nothing_is_taken_before_commit(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    buf.add("telemetry", 1000, [body(1)])
    assert buf.take("telemetry", 10, 10_000) == []
    assert buf.stats().depth == 0
    buf.commit()
    assert numbers(buf.take("telemetry", 10, 10_000)) == [1]


def test_take_gives_batches_oldest_first_and_never_twice(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 25)
    assert numbers(buf.take("telemetry", 10, 10_000)) == list(range(10))
    assert numbers(buf.take("telemetry", 10, 10_000)) == list(range(10, 20))
    assert numbers(buf.take("telemetry", 10, 10_000)) == list(range(20, 25))
    assert buf.take("telemetry", 10, 10_000) == []


def test_take_respects_max_bytes_but_always_gives_one(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 10)
    assert len(buf.take("telemetry", 10, 3 * len(body(0)))) == 3
    assert len(buf.take("telemetry", 10, 1)) == 1


def test_kinds_are_separate_queues(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 3, 0, "telemetry")
    fill(buf, 2, 100, "events")
    assert numbers(buf.take("events", 10, 10_000)) == [100, 101]
    assert numbers(buf.take("telemetry", 10, 10_000)) == [0, 1, 2]


def test_ack_deletes_only_at_commit(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 5)
    items = buf.take("telemetry", 3, 10_000)
    buf.ack([i.id for i in items])
    assert buf.stats().depth == 5
    buf.commit()
    assert buf.stats().depth == 2
    buf.rewind()
    assert numbers(buf.take("telemetry", 10, 10_000)) == [3, 4]


def test_rewind_gives_back_everything_unacked_in_order(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 6)
    first = buf.take("telemetry", 2, 10_000)
    buf.take("telemetry", 2, 10_000)
    buf.ack([first[0].id])
    buf.commit()
    buf.rewind()
    assert numbers(buf.take("telemetry", 10, 10_000)) == [1, 2, 3, 4, 5]


def test_split_serves_fresh_items_while_backlog_drains_oldest_first(
    make_buffer: MakeBuffer,
) -> None:
    buf = make_buffer()
    fill(buf, 4)  # 0..3 taken before the outage, held by the MQTT client
    assert numbers(buf.take("telemetry", 4, 10_000)) == [0, 1, 2, 3]
    fill(buf, 20, 4)  # 4..23 sampled during the outage
    assert buf.split("telemetry") is True
    fill(buf, 3, 100)  # fresh after reconnect
    assert numbers(buf.take("telemetry", 2, 10_000, fresh=True)) == [100, 101]
    assert numbers(buf.take("telemetry", 8, 10_000)) == list(range(4, 12))
    fill(buf, 2, 200)
    assert numbers(buf.take("telemetry", 10, 10_000, fresh=True)) == [102, 200, 201]
    assert numbers(buf.take("telemetry", 8, 10_000)) == list(range(12, 20))
    assert buf.backlog("telemetry")
    assert numbers(buf.take("telemetry", 8, 10_000)) == list(range(20, 24))
    # the backlog met the fresh segment: one cursor again, nothing skipped or repeated
    assert buf.take("telemetry", 8, 10_000) == []
    assert not buf.backlog("telemetry")
    fill(buf, 2, 300)
    assert numbers(buf.take("telemetry", 8, 10_000)) == [300, 301]


def test_split_without_backlog_keeps_one_cursor(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 3)
    buf.take("telemetry", 10, 10_000)
    assert buf.split("telemetry") is False
    fill(buf, 2, 10)
    assert numbers(buf.take("telemetry", 10, 10_000)) == [10, 11]


def test_repeated_splits_drain_every_outage_in_order(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    fill(buf, 5)
    buf.split("telemetry")
    fill(buf, 5, 10)
    buf.split("telemetry")
    fill(buf, 5, 20)
    seen = []
    while True:
        fresh = buf.take("telemetry", 2, 10_000, fresh=True)
        old = buf.take("telemetry", 2, 10_000)
        if not fresh and not old:
            break
        seen += numbers(fresh) + numbers(old)
    assert sorted(seen) == [*range(5), *range(10, 15), *range(20, 25)]
    assert len(seen) == len(set(seen))


def test_max_items_drops_oldest_and_counts(make_buffer: MakeBuffer) -> None:
    buf = make_buffer(max_items=10)
    fill(buf, 25)
    stats = buf.stats()
    assert stats.depth == 10
    assert stats.dropped == 15
    buf.rewind()
    assert numbers(buf.take("telemetry", 100, 100_000)) == list(range(15, 25))


def test_max_bytes_drops_oldest(make_buffer: MakeBuffer) -> None:
    per_item = len(body(10)) + ROW_OVERHEAD
    buf = make_buffer(max_bytes=per_item * 300)
    fill(buf, 500, 100)
    stats = buf.stats()
    assert stats.bytes <= per_item * 300
    assert stats.depth + stats.dropped == 500
    assert stats.dropped >= 200
    remaining = numbers(buf.take("telemetry", 1000, 1_000_000))
    assert remaining == list(range(600 - stats.depth, 600))


def test_full_buffer_keeps_items_in_flight_and_counts_only_the_lost(
    make_buffer: MakeBuffer,
) -> None:
    buf = make_buffer(max_items=10)
    fill(buf, 10)  # 0..9
    in_flight = buf.take("telemetry", 4, 10_000)  # 0..3 handed to MQTT, then the link drops
    fill(buf, 8, 10)  # 10..17 sampled offline: 4..7, the oldest waiting, make room
    stats = buf.stats()
    assert (stats.depth, stats.dropped) == (14, 4)
    buf.split("telemetry")  # reconnect: the MQTT client sends 0..3 again, the broker acks
    buf.ack([i.id for i in in_flight])
    buf.commit()
    buf.rewind()
    rest = buf.take("telemetry", 100, 100_000)
    assert numbers(rest) == list(range(8, 18))
    delivered = numbers(in_flight) + numbers(rest)
    assert buf.stats().dropped == 18 - len(delivered) == 4


def test_max_bytes_leaves_items_in_flight_out_of_the_count(make_buffer: MakeBuffer) -> None:
    per_item = len(body(10)) + ROW_OVERHEAD
    buf = make_buffer(max_bytes=per_item * 5)
    fill(buf, 5, 10)
    in_flight = buf.take("telemetry", 3, 10_000)  # 10..12
    fill(buf, 4, 20)  # waiting: 13, 14, 20..23 is one over
    stats = buf.stats()
    assert (stats.depth, stats.dropped) == (8, 1)
    assert stats.bytes == 8 * per_item
    buf.ack([i.id for i in in_flight])
    buf.commit()
    assert numbers(buf.take("telemetry", 100, 100_000)) == [14, 20, 21, 22, 23]


def test_every_item_is_delivered_or_counted_dropped_never_both(make_buffer: MakeBuffer) -> None:
    """An agent's life in miniature, driven by a seeded random: readings come in,
    batches go out through a window of in-flight messages, acks come back late or
    never (the link drops; the client re-sends what it holds after the reconnect)."""
    rng = random.Random(17)
    max_items, window = 30, 3
    buf = make_buffer(max_items=max_items)
    added = 0
    flight: list[list[int]] = []  # batches the MQTT client holds, oldest first
    delivered: list[int] = []
    online = True
    for _ in range(400):
        count = rng.randint(0, 6)
        fill(buf, count, added)
        added += count
        held = sum(map(len, flight))
        assert buf.stats().depth - held <= max_items  # what waits stays within the limit
        if rng.random() < 0.05:
            online = not online
            if online:
                buf.split("telemetry")
        while online and len(flight) < window:
            batch = buf.take("telemetry", rng.randint(1, 8), 10_000, fresh=rng.random() < 0.5)
            if not batch:
                break
            flight.append([i.id for i in batch])
            delivered += numbers(batch)
        if online and flight and rng.random() < 0.6:
            buf.ack(flight.pop(0))
    while flight:
        buf.ack(flight.pop(0))
    buf.commit()
    buf.split("telemetry")
    while batch := buf.take("telemetry", 50, 100_000, fresh=False):
        delivered += numbers(batch)
    assert len(delivered) == len(set(delivered))
    assert buf.stats().dropped > 0
    assert buf.stats().dropped == added - len(delivered)


def test_stats_report_depth_bytes_and_oldest(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    assert buf.stats().oldest_ts is None
    buf.add("telemetry", 5000, [body(1)])
    buf.add("telemetry", 6000, [body(2)])
    buf.commit()
    stats = buf.stats()
    assert (stats.depth, stats.oldest_ts, stats.dropped) == (2, 5000, 0)
    assert stats.bytes == 2 * (len(body(1)) + ROW_OVERHEAD)


def test_seq_is_monotonic(make_buffer: MakeBuffer) -> None:
    buf = make_buffer()
    seqs = [buf.next_seq() for _ in range(100)]
    assert seqs == sorted(set(seqs))


# disk only


def test_sqlite_survives_reopen_with_unacked_items_dropped_count_and_seq(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buf = SqliteBuffer(path, max_items=5)
    fill(buf, 8)
    taken = buf.take("telemetry", 2, 10_000)
    buf.ack([taken[0].id])
    last_seq = max(buf.next_seq() for _ in range(25_000))
    buf.close()
    again = SqliteBuffer(path, max_items=5)
    assert again.stats().dropped == 3
    assert numbers(again.take("telemetry", 10, 10_000)) == [4, 5, 6, 7]
    assert again.next_seq() > last_seq
    again.close()


def test_sqlite_uncommitted_adds_are_the_only_loss(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    buf = SqliteBuffer(path)
    fill(buf, 3)
    buf.add("telemetry", 1, [body(99)])  # not committed: a power cut now loses it
    again = SqliteBuffer(path)  # a second opener sees only committed rows
    assert numbers(again.take("telemetry", 10, 10_000)) == [0, 1, 2]
    again.close()
    buf.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_sqlite_corrupt_file_is_moved_aside(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "b.db"
    if damage == "garbage":
        path.write_bytes(b"\x13\x37 this is not a database " * 400)
    else:
        buf = SqliteBuffer(path)
        for start in range(0, 4000, 500):
            fill(buf, 500, start)
        buf.close()
        data = path.read_bytes()
        assert len(data) > 8192
        path.write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.ERROR, logger="agent.buffer"):
        buf = SqliteBuffer(path)
    assert buf.moved_aside is not None and buf.moved_aside.exists()
    assert "moved it aside" in caplog.text and str(buf.moved_aside) in caplog.text
    assert buf.stats().depth == 0
    fill(buf, 2)
    assert numbers(buf.take("telemetry", 10, 10_000)) == [0, 1]
    buf.close()
