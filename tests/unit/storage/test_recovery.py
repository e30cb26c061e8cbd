"""Crash recovery: cut the .log anywhere, add garbage, and exactly the valid
prefix survives, with indexes rebuilt."""

import os
import random

import pytest

from strom.records.batch import BatchHeader
from strom.storage import LogConfig, LogManager, PartitionLog
from strom.storage.files import DiskMedium

from .helpers import batch, read_all

CONFIG = LogConfig({"segment.bytes": "2000", "index.interval.bytes": "200", "retention.ms": "-1"})


def _fill(medium, n=60):
    plog = PartitionLog(medium, "t-0", CONFIG)
    for i in range(n):
        plog.append(batch([b"%d" % i * (1 + i % 7)] * (1 + i % 3), ts=1000 + i))
    records = read_all(plog)
    plog.close()
    return records


@pytest.mark.parametrize("seed", range(12))
def test_cut_and_garbage_lose_only_the_damaged_batches(tmp_path, seed):
    """The active segment's torn end is cut; a cut earlier segment loses
    only its damaged end, and the intact segments after it stay."""
    rng = random.Random(seed)
    medium = DiskMedium(str(tmp_path))
    records = _fill(medium)
    d = tmp_path / "t-0"
    logs = sorted(p for p in d.iterdir() if p.suffix == ".log")
    victim = logs[-1] if seed % 2 else rng.choice(logs[:-1])
    later = logs[logs.index(victim) + 1] if victim != logs[-1] else None
    data = victim.read_bytes()
    cut = rng.randrange(0, len(data))
    garbage = rng.randbytes(rng.randrange(0, 200)) if seed % 3 else b""
    victim.write_bytes(data[:cut] + garbage)
    # Valid prefix: whole batches that end before the cut.
    pos, survivors_end = 0, None
    while pos + 61 <= cut:
        h = BatchHeader.parse(data, pos)
        if pos + h.size > cut:
            break
        pos += h.size
        survivors_end = h.next_offset
    if survivors_end is None:
        survivors_end = int(victim.stem)
    for idx in d.glob("*.index"):  # indexes may be stale or missing after a crash
        if seed % 4 == 0:
            idx.unlink()
    plog = PartitionLog(medium, "t-0", CONFIG, recovery_point=0)
    kept_from = int(later.stem) if later else None
    expected = [r for r in records if r.offset < survivors_end
                or (kept_from is not None and r.offset >= kept_from)]
    assert read_all(plog) == expected
    end = survivors_end if later is None else records[-1].offset + 1
    assert plog.log_end_offset == end
    # Appends continue densely, indexes work for lookups after recovery.
    assert plog.append(batch([b"after"])).base_offset == end
    if survivors_end > 1005 - 1000:
        assert plog.offset_for_timestamp(1003)[0] <= 10


def test_recovery_starts_at_the_recovery_point(tmp_path, caplog):
    medium = DiskMedium(str(tmp_path))
    _fill(medium)
    d = tmp_path / "t-0"
    first = sorted(d.glob("*.log"))[0]
    with open(first, "r+b") as f:  # damage the first segment, below the point
        f.seek(100)
        f.write(b"\xff" * 8)
    plog = PartitionLog(medium, "t-0", CONFIG, recovery_point=10**6)
    assert "damaged" not in caplog.text  # nothing below the point was rescanned
    end = plog.log_end_offset
    plog = PartitionLog(medium, "t-0", CONFIG, recovery_point=0)
    assert "quarantined" in caplog.text
    assert plog.log_end_offset == end > 100  # the damaged batch is skipped, not cut


def test_manager_recovers_after_unclean_stop_and_skips_after_clean(tmp_path):
    mgr = LogManager(str(tmp_path))
    topic = mgr.create_topic("orders", 2, {"retention.ms": "-1"})
    for i in range(20):
        topic.logs[i % 2].append(batch([b"order-%d" % i]))
    mgr.flusher.flush_sync(topic.logs[0], topic.logs[0].log_end_offset)
    mgr.close()
    assert (tmp_path / ".strom_cleanshutdown").exists()
    mgr = LogManager(str(tmp_path))
    assert not (tmp_path / ".strom_cleanshutdown").exists()
    assert [p.log_end_offset for p in mgr.get_topic("orders").logs] == [10, 10]
    # "Crash": append garbage and never close.
    seg = tmp_path / "orders-1" / "00000000000000000000.log"
    with open(seg, "ab") as f:
        f.write(os.urandom(300))
    mgr.flusher.close()
    mgr = LogManager(str(tmp_path))
    assert [p.log_end_offset for p in mgr.get_topic("orders").logs] == [10, 10]
    assert read_all(mgr.get_log("orders", 1))[-1].value == b"order-19"
    assert mgr.get_topic("orders").config.retention_ms == -1
    mgr.close()


def test_interrupted_compaction_swap_is_finished_at_load(tmp_path):
    medium = DiskMedium(str(tmp_path))
    records = _fill(medium, 30)
    d = tmp_path / "t-0"
    first = sorted(d.glob("*.log"))[0]
    # A complete replacement left as .swap (crash between the two renames)
    (d / (first.name + ".swap")).write_bytes(first.read_bytes())
    (d / (first.name + ".cleaned")).write_bytes(b"partial garbage")
    plog = PartitionLog(medium, "t-0", CONFIG)
    assert not list(d.glob("*.swap")) and not list(d.glob("*.cleaned"))
    assert read_all(plog) == records
