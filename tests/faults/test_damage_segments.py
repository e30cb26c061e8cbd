"""Damage to a partition's files (.log, .index, .timeindex, log-start-offset):
cut, zeroed, flipped, garbage appended, deleted, after a clean stop and
after SIGKILL of a real broker process. Then, with a real client
(confluent-kafka, `check.crcs` on): no batch whose CRC fails is served, no
reader is stuck (every partition reaches its end within a deadline), and
nothing is lost but the damaged batches.

One broker life per stop mode covers every case: each case is its own
topic, damaged in its own way while the broker is down."""

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.records.batch import iter_batches

RECORDS = 300
CONFIGS = {"segment.bytes": "6000", "index.interval.bytes": "800", "retention.ms": "-1"}
TS0 = 1_700_000_000_000
START = 40  # DeleteRecords moves the start here for the log-start-offset cases


def _value(topic: str, i: int) -> bytes:
    return b"%s-%05d-" % (topic.encode(), i) + bytes([i % 251]) * 60


def _segments(part_dir, suffix=".log"):
    return sorted(p for p in part_dir.iterdir() if p.name.endswith(suffix))


def _batches(path):
    return [(pos, h) for pos, h in iter_batches(path.read_bytes())]


def _offsets_overlapping(path, start, end):
    """Offsets of the batches that overlap bytes [start, end) of a .log."""
    lost = set()
    for pos, h in _batches(path):
        if pos < end and pos + h.size > start:
            lost.update(range(h.base_offset, h.next_offset))
    return lost


# Each case: name -> damage(part_dir) returning the offsets it may lose.

def _log_flip(d):
    seg = _segments(d)[1]
    pos, h = _batches(seg)[2]
    data = bytearray(seg.read_bytes())
    data[pos + 40] ^= 0x40
    seg.write_bytes(bytes(data))
    return set(range(h.base_offset, h.next_offset))


def _log_flip_length(d):
    seg = _segments(d)[1]
    pos, h = _batches(seg)[3]
    data = bytearray(seg.read_bytes())
    data[pos + 10] ^= 0x01  # batch_length, which the CRC does not cover
    seg.write_bytes(bytes(data))
    return set(range(h.base_offset, h.next_offset))


def _log_zero(d):
    seg = _segments(d)[1]
    size = seg.stat().st_size
    start, end = size // 3, min(size // 3 + 1024, size)
    lost = _offsets_overlapping(seg, start, end)
    with open(seg, "r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))
    return lost


def _log_cut_earlier(d):
    seg = _segments(d)[1]
    size = seg.stat().st_size
    lost = _offsets_overlapping(seg, size // 2, size)
    os.truncate(seg, size // 2)
    return lost


def _log_cut_active(d):
    seg = _segments(d)[-1]
    size = seg.stat().st_size
    lost = _offsets_overlapping(seg, size // 2, size)
    os.truncate(seg, size // 2)
    return lost


def _log_garbage_earlier(d):
    with open(_segments(d)[1], "ab") as f:
        f.write(os.urandom(97))
    return set()


def _log_garbage_active(d):
    with open(_segments(d)[-1], "ab") as f:
        f.write(os.urandom(97))
    return set()


def _log_deleted(d):
    seg = _segments(d)[1]
    lost = _offsets_overlapping(seg, 0, seg.stat().st_size)
    seg.unlink()
    return lost


def _index_case(suffix, how):
    def damage(d):
        for path in (_segments(d, suffix)[1], _segments(d, suffix)[-1]):
            data = path.read_bytes()
            if how == "cut":
                path.write_bytes(data[: len(data) // 2 + 3])
            elif how == "zeroed":
                path.write_bytes(bytes(len(data)))
            elif how == "flipped":
                b = bytearray(data)
                if b:
                    b[len(b) // 2] ^= 0x40
                path.write_bytes(bytes(b))
            elif how == "garbage":
                path.write_bytes(data + os.urandom(29))
            elif how == "deleted":
                path.unlink()
        return set()
    return damage


def _start_case(how):
    def damage(d):
        path = d / "log-start-offset"
        data = path.read_bytes()
        if how == "cut":
            path.write_bytes(data[:1])
        elif how == "zeroed":
            path.write_bytes(bytes(len(data)))
        elif how == "flipped":
            path.write_bytes(bytes([data[0] ^ 0x40]) + data[1:])
        elif how == "garbage":
            path.write_bytes(data + b"\x00garbage")
        elif how == "deleted":
            path.unlink()
        return set(range(START))  # below the start: deleted on request already
    return damage


CASES = {
    "log-flipped": _log_flip,
    "log-flipped-length": _log_flip_length,
    "log-zeroed": _log_zero,
    "log-cut-earlier": _log_cut_earlier,
    "log-cut-active": _log_cut_active,
    "log-garbage-earlier": _log_garbage_earlier,
    "log-garbage-active": _log_garbage_active,
    "log-deleted": _log_deleted,
    **{f"index-{how}": _index_case(".index", how)
       for how in ("cut", "zeroed", "flipped", "garbage", "deleted")},
    **{f"timeindex-{how}": _index_case(".timeindex", how)
       for how in ("cut", "zeroed", "flipped", "garbage", "deleted")},
    **{f"start-{how}": _start_case(how)
       for how in ("cut", "zeroed", "flipped", "garbage", "deleted")},
}


def _produce_all(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    futures = admin.create_topics([NewTopic(t, 1, 1, config=CONFIGS) for t in CASES])
    for f in futures.values():
        f.result(10)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0,
                  "batch.num.messages": 4, "enable.idempotence": False})
    for topic in CASES:
        for i in range(RECORDS):
            p.produce(topic, value=_value(topic, i), partition=0, timestamp=TS0 + i)
        p.poll(0)
    assert p.flush(20) == 0
    starts = [TopicPartition(t, 0, START) for t in CASES if t.startswith("start-")]
    for f in admin.delete_records(starts).values():
        f.result(10)


def _consume_all(bs, deadline_s=25.0):
    """Every partition to its end; {topic: {offset: value}}; errors seen."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "damage-check", "check.crcs": True,
                  "enable.partition.eof": True, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.max.bytes": 4096, "message.max.bytes": 4096,
                  "max.partition.fetch.bytes": 1024})
    c.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in CASES])
    got = {t: {} for t in CASES}
    at_end, errors = set(), []
    deadline = time.monotonic() + deadline_s
    while len(at_end) < len(CASES) and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.topic())
            else:
                errors.append(f"{msg.topic()}: {msg.error()}")
            continue
        got[msg.topic()][msg.offset()] = msg.value()
    stuck = sorted(set(CASES) - at_end)
    times = c.offsets_for_times([TopicPartition(t, 0, TS0 + 200) for t in CASES], 10)
    c.close()
    return got, errors, stuck, {tp.topic: tp.offset for tp in times}


@pytest.mark.parametrize("stop", ["clean", "sigkill"])
def test_damaged_segment_files_never_serve_bad_batches_block_readers_or_lose_more(
        broker_process, stop):
    first = broker_process().start()
    _produce_all(first.bootstrap_servers)
    if stop == "clean":
        assert first.stop() == 0
    else:
        first.kill()
    data_dir = first.data_dir
    may_lose = {}
    for topic, damage in CASES.items():
        may_lose[topic] = damage(Path(data_dir) / f"{topic}-0")

    second = broker_process().start()
    got, errors, stuck, times = _consume_all(second.bootstrap_servers)
    problems = [f"{len(errors)} errors while consuming, e.g. {sorted(set(errors))[:4]}"] if errors else []
    if stuck:
        problems.append(f"readers stuck (no end reached) in {stuck}")
    for topic, lost_ok in may_lose.items():
        records = got[topic]
        wrong = [o for o, v in records.items() if v != _value(topic, o)]
        if wrong:
            problems.append(f"{topic}: {len(wrong)} records served with wrong contents")
        lost = set(range(RECORDS)) - set(records) - lost_ok
        if lost:
            problems.append(f"{topic}: lost {len(lost)} undamaged records, e.g. {min(lost)}")
        if 200 not in lost_ok and times[topic] != 200:
            problems.append(f"{topic}: offsets_for_times found {times[topic]}, not 200")
    assert not problems, "\n".join(problems)
    assert second.stop() == 0
