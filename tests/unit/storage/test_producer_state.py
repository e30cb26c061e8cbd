"""Producer state snapshots: written at a clean close, used at the next
start, never trusted when damaged or past the log end."""

import pytest

from strom.records import Record, build_batch
from strom.storage import LogConfig, PartitionLog
from strom.storage.files import DiskMedium
from strom.storage.producer_state import ProducerStateTable


def idem(pid, seq, n=1, epoch=0):
    return build_batch([Record(None, b"x" * 40, 1000 + i) for i in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq)


def state(table):
    return {pid: (e.epoch, list(e.batches)) for pid, e in table.producers.items()}


def from_headers(plog):
    table = ProducerStateTable()
    for seg in plog.segments:
        for _, h in seg.headers():
            if h.producer_id >= 0 and h.base_sequence >= 0:
                table.update(h)
    return state(table)


def open_log(tmp_path, **configs):
    return PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig(
        {"segment.bytes": "400", "retention.ms": "-1", **configs}))


def fill(plog):
    for i in range(8):
        plog.append(idem(1, i * 2, 2))
        plog.append(idem(2, i))
    plog.append(idem(3, 0, epoch=4))
    return state(plog.producer_state)


def snapshots(tmp_path):
    return sorted(p.name for p in (tmp_path / "t-0").iterdir() if p.name.endswith(".snapshot"))


def test_a_clean_close_writes_a_snapshot_the_next_start_uses(tmp_path):
    plog = open_log(tmp_path)
    before = fill(plog)
    plog.close()
    assert snapshots(tmp_path) == [f"{25:020d}.snapshot"]
    plog = open_log(tmp_path)
    plog.append(idem(2, 8))  # after the snapshot: replayed from the log
    plog.flush()  # and no close: as a crash, the 25 snapshot stays the newest
    expected = {**before, 2: (0, before[2][1][1:] + [(8, 8, 25, 25)])}
    assert state(plog.producer_state) == expected
    plog = open_log(tmp_path)
    assert snapshots(tmp_path) == [f"{25:020d}.snapshot"]
    assert state(plog.producer_state) == expected


def test_producers_outlive_the_segments_retention_deleted(tmp_path):
    """Kafka's reason for snapshots: the producer's batches are gone, its
    sequence is not."""
    plog = open_log(tmp_path, **{"retention.bytes": "0"})
    before = fill(plog)
    plog.roll()
    plog.append(build_batch([Record(None, b"plain", 5000)]))
    plog.apply_retention()
    assert from_headers(plog) == {}  # nothing of them is left in the log
    plog.close()
    plog = open_log(tmp_path, **{"retention.bytes": "0"})
    assert state(plog.producer_state) == before
    assert not plog.append(idem(1, 16)).duplicate  # the next sequence, not "unknown producer"


@pytest.mark.parametrize("how", ["cut", "zeroed", "flipped", "garbage", "shape"])
def test_a_damaged_snapshot_is_ignored(tmp_path, how):
    plog = open_log(tmp_path)
    before = fill(plog)
    plog.close()
    path = tmp_path / "t-0" / snapshots(tmp_path)[0]
    raw = path.read_bytes()
    path.write_bytes({
        "cut": raw[: len(raw) // 2], "zeroed": bytes(len(raw)),
        "flipped": raw[:20] + bytes([raw[20] ^ 1]) + raw[21:], "garbage": raw + b"junk",
        "shape": b"offset 25\nproducer 1 0 1,2\n",
    }[how])
    plog = open_log(tmp_path)
    assert state(plog.producer_state) == before  # from the log instead
    assert not path.exists()


def test_a_snapshot_past_the_log_end_is_not_used(tmp_path):
    plog = open_log(tmp_path)
    fill(plog)
    plog.close()
    plog = open_log(tmp_path)
    plog.truncate_to(10)
    assert snapshots(tmp_path) == []
    assert state(plog.producer_state) == from_headers(plog)
    plog.close()
    plog = open_log(tmp_path)
    assert state(plog.producer_state) == from_headers(plog)


def test_the_maintenance_pass_snapshots_after_a_roll_once_durable(tmp_path):
    """A crash after retention deleted a producer's segments keeps its
    sequence too, through the snapshot taken after the roll."""
    plog = open_log(tmp_path, **{"retention.bytes": "0"})
    before = fill(plog)
    assert not plog.snapshot_producers()  # not fsynced yet
    plog.flush()
    assert plog.snapshot_producers()
    assert not plog.snapshot_producers()  # nothing rolled since
    plog.roll()
    plog.append(build_batch([Record(None, b"plain", 5000)]))
    plog.apply_retention()
    plog.flush()  # and no close: a crash
    plog = open_log(tmp_path, **{"retention.bytes": "0"})
    assert state(plog.producer_state) == before
