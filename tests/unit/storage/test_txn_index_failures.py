"""A `.txnindex` whose write or fsync failed is never trusted short after an
unclean stop, and a rolled segment's indexes are fsynced before the recovery
point passes them (the storage review, findings 1 and 2).

The failing disk is real: the index file's descriptor is pointed at
/dev/full, whose writes fail with ENOSPC (and ftruncate/fdatasync with
EINVAL). "SIGKILL" is a second PartitionLog opened on the same directory
with the first one's recovery point, the first never closed."""

import os

from strom.records import Record, build_batch
from strom.records.batch import batch_records
from strom.storage import LogConfig, PartitionLog, cleaner, transactions
from strom.storage.files import DiskMedium

from .helpers import dev_full
from .test_transactions import TS, plain, txn


def config(**extra):
    return LogConfig({"retention.ms": "-1", **extra})


def compacted():
    return config(**{"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})


def reopen(tmp_path, cfg, recovery_point):
    """What the broker opens after a SIGKILL: same files, checkpointed point."""
    return PartitionLog(DiskMedium(str(tmp_path)), "t-0", cfg, recovery_point=recovery_point)


def committed_values(plog):
    """The keyed values a read_committed reader gets, by offset."""
    aborted = plog.aborted_transactions(0, plog.log_end_offset)
    out = []
    for seg in plog.segments:
        for _, h, raw in seg.batches():
            if h.is_control or (h.is_transactional and any(
                    pid == h.producer_id and h.base_offset >= first for pid, first in aborted)):
                continue
            out += [(r.offset, r.value) for r in batch_records(raw, 0, 1 << 20)]
    return out


def test_a_failed_abort_entry_write_is_not_trusted_after_an_unclean_stop(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", config())
    plog.append(txn(1, 0, 3))  # 0-2
    with dev_full(plog.active.txn_index._file):
        plog.append_marker(1, 0, False, 0)  # 3: ABORT, its entry not written
    assert plog.aborted_transactions(0, 4) == [(1, 0)]  # served from memory meanwhile
    assert not (tmp_path / "t-0" / "00000000000000000000.txnindex").exists()
    plog.roll()
    plog.append(plain(2))
    rp = plog.flush()
    assert rp == 6
    after = reopen(tmp_path, config(), rp)
    assert after.aborted_transactions(0, after.log_end_offset) == [(1, 0)]
    assert after.last_stable_offset == 6


def test_a_failed_rebuild_write_leaves_no_short_file_to_trust(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", config())
    plog.append(txn(1, 0, 3))
    plog.append_marker(1, 0, False, 0)
    plog.roll()
    plog.append(plain())
    rp = plog.flush()
    path = tmp_path / "t-0" / "00000000000000000000.txnindex"
    os.truncate(path, 0)  # what the rebuild is to replace: short
    seg = plog.segments[0]
    with dev_full(seg.txn_index._file):
        transactions.rebuild(plog, 0)
    assert seg.txn_index.entries and plog.aborted_transactions(0, 5) == [(1, 0)]
    assert not path.exists()
    after = reopen(tmp_path, config(), rp)
    assert after.aborted_transactions(0, after.log_end_offset) == [(1, 0)]


def test_a_failed_index_write_in_the_cleaners_swap_is_not_trusted_after_a_restart(tmp_path):
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", compacted())
    plog.append(build_batch([Record(b"K", b"committed", TS - 9000)]))  # 0
    plog.append(build_batch([Record(b"K", b"ABORTED", TS - 8000)], producer_id=7,
                            producer_epoch=0, base_sequence=0, is_transactional=True))  # 1
    plog.append_marker(7, 0, False, 0, now=TS - 7000)  # 2: ABORT
    plog.append(build_batch([Record(b"Y", b"y", TS - 6500)]))  # 3
    plog.roll()
    plog.append(build_batch([Record(b"X", b"x", TS - 6000)]))  # 4
    rp = plog.flush()
    new_segment = plog._new_segment
    opened = []

    def failing_new_segment(base):  # the swapped-in segment's index lands on /dev/full
        seg = new_segment(base)
        cm = dev_full(seg.txn_index._file)
        cm.__enter__()
        opened.append(cm)
        return seg

    plog._new_segment = failing_new_segment
    try:
        cleaner.clean(plog, TS)
    finally:
        plog._new_segment = new_segment
        for cm in opened:
            cm.__exit__(None, None, None)
    assert opened  # the swap ran
    assert (0, b"committed") in committed_values(plog)
    live = plog.segments[0].txn_index.entries
    assert live  # the aborted transaction's entry, served from memory
    assert not (tmp_path / "t-0" / "00000000000000000000.txnindex").exists()
    after = reopen(tmp_path, compacted(), rp)
    assert after.segments[0].txn_index.entries == live  # rebuilt, not an empty file trusted
    after.roll()
    cleaner.clean(after, TS)
    values = committed_values(after)
    assert (0, b"committed") in values and b"ABORTED" not in [v for _, v in values]


def test_a_rolled_segments_indexes_are_synced_though_flushed_while_active(tmp_path):
    """The flusher's last flush of a segment usually runs while it is still
    active (indexes skipped); the append that rolls it leaves the recovery
    point at its end. The next flush must still write and fsync them."""
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", config(**{"index.interval.bytes": "1"}))
    plog.append(txn(1, 0, 3))
    plog.append(plain())
    plog.append_marker(1, 0, False, 0)  # 4
    first = plog.active
    plog.flush()  # active: the .log only
    plog.roll()
    plog.append(plain())
    plog.flush()
    assert plog.recovery_point == 6
    assert not first.txn_index.dirty  # fsynced
    seg_dir = tmp_path / "t-0"
    assert (seg_dir / "00000000000000000000.txnindex").stat().st_size == 34
    assert (seg_dir / "00000000000000000000.index").stat().st_size > 0  # written, then synced


def test_indexes_rebuilt_by_recovery_are_synced_by_the_next_flush(tmp_path):
    """Recovery rewrites a segment's indexes, and the segment is trusted
    below the recovery point from then on: they are fsynced before that."""
    cfg = config(**{"index.interval.bytes": "1"})
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", cfg)
    plog.append(txn(1, 0, 3))
    plog.append_marker(1, 0, False, 0)
    plog.roll()
    plog.append(plain())
    plog.flush()
    first = plog.segments[0]
    first.recover()  # what an unclean load does to each segment it re-reads
    assert first.indexes_unsynced
    plog.flush()
    assert not first.indexes_unsynced
