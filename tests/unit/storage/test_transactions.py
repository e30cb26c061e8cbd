"""Transactions in a partition log: open transactions, markers, the last
stable offset, the aborted-transaction index (`.txnindex`), and their
rebuild after a clean stop, an unclean one (SIGKILL) and damage."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from strom.records import Record, build_batch
from strom.storage import LogConfig, PartitionLog
from strom.storage import producer_state as ps
from strom.storage.files import DiskMedium
from strom.storage.producer_state import (
    CoordinatorFencedError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
)
from strom.storage.log import now_ms
from strom.storage.txn_index import ENTRY, ENTRY_SIZE

TS = now_ms()  # markers are stamped with the time: data near it keeps one segment (segment.ms)


def txn(pid, seq, n=1, epoch=0, ts=TS):
    return build_batch([Record(None, b"t" * 20, ts + i) for i in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, is_transactional=True)


def idem(pid, seq, n=1, epoch=0):
    return build_batch([Record(None, b"i" * 20, TS + i) for i in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq)


def plain(n=1):
    return build_batch([Record(None, b"p" * 20, TS + i) for i in range(n)])


def open_log(tmp_path, clean=False, **configs):
    return PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig(
        {"retention.ms": "-1", **configs}), clean=clean)


def txn_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "t-0").iterdir() if p.name.endswith(".txnindex"))


def test_a_transaction_holds_the_lso_until_its_commit(tmp_path):
    plog = open_log(tmp_path)
    plog.append(plain(2))  # 0-1
    assert plog.last_stable_offset == 2 == plog.high_watermark
    assert plog.append(txn(1, 0, 3)).base_offset == 2  # 2-4
    plog.append(plain())  # 5
    plog.append(txn(1, 3))  # 6: same transaction, first offset stays 2
    assert plog.last_stable_offset == 2 and plog.high_watermark == 7
    assert plog.ongoing_transactions() == {1: 2}
    marker = plog.append_marker(1, 0, True, 5, now=TS + 2000)
    assert marker.base_offset == marker.last_offset == 7
    assert plog.last_stable_offset == 8 == plog.high_watermark
    assert plog.ongoing_transactions() == {}
    assert plog.aborted_transactions(0, 8) == []  # a commit adds no entry
    (p,) = plog.producers()
    assert p == {"producer_id": 1, "producer_epoch": 0, "last_sequence": 3,
                 "last_timestamp": TS + 2000, "coordinator_epoch": 5, "current_txn_start_offset": -1}


def test_interleaved_producers_and_aborted_ranges(tmp_path):
    plog = open_log(tmp_path)
    plog.append(txn(1, 0, 2))  # 0-1 p1
    plog.append(txn(2, 0, 2))  # 2-3 p2
    plog.append(txn(1, 2))  # 4 p1
    assert plog.last_stable_offset == 0
    plog.append_marker(1, 0, False, 0)  # 5: ABORT p1 (0..4)
    assert plog.last_stable_offset == 2  # p2 still open
    plog.append(txn(3, 0))  # 6 p3
    plog.append_marker(2, 0, True, 0)  # 7: COMMIT p2
    assert plog.last_stable_offset == 6
    plog.append_marker(3, 0, False, 0)  # 8: ABORT p3
    assert plog.last_stable_offset == 9 == plog.high_watermark
    assert plog.aborted_transactions(0, 9) == [(1, 0), (3, 6)]
    assert plog.aborted_transactions(0, 1) == [(1, 0)]
    assert plog.aborted_transactions(5, 6) == [(1, 0)]  # its marker is at 5
    assert plog.aborted_transactions(6, 7) == [(3, 6)]
    assert plog.aborted_transactions(9, 12) == []
    seg = plog.active
    # the LSO right after each marker: p2 open at 2 after p1's abort; nothing after p3's
    assert [(e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset)
            for e in seg.txn_index.entries] == [(1, 0, 4 + 1, 2), (3, 6, 8, 9)]
    raw = (tmp_path / "t-0" / txn_files(tmp_path)[0]).read_bytes()
    assert len(raw) == 2 * ENTRY_SIZE == 68
    assert ENTRY.unpack_from(raw, 0) == (0, 1, 0, 5, 2)


def test_aborted_transactions_are_found_across_segments(tmp_path):
    plog = open_log(tmp_path, **{"segment.bytes": "200"})
    plog.append(txn(1, 0))  # 0, segment 0
    for i in range(6):
        plog.append(plain())  # rolls
    plog.append_marker(1, 0, False, 0)
    assert len(plog.segments) > 2
    assert plog.segments[0].txn_index.entries == []
    assert plog.aborted_transactions(0, 1) == [(1, 0)]
    assert plog.aborted_transactions(1, 3) == [(1, 0)]  # the transaction spans them


def test_stale_epochs_are_fenced_and_the_log_is_unchanged(tmp_path):
    plog = open_log(tmp_path)
    plog.append(txn(1, 0, epoch=3))
    end = plog.log_end_offset
    with pytest.raises(InvalidProducerEpochError):
        plog.append_marker(1, 2, True, 0)
    plog.append_marker(1, 3, False, 4)
    with pytest.raises(CoordinatorFencedError):
        plog.append_marker(1, 3, True, 3)  # an older coordinator (Kafka fences it too)
    assert plog.log_end_offset == end + 1
    # a marker with a newer epoch (the coordinator's bump) becomes the producer's epoch
    plog.append_marker(1, 5, False, 4)
    assert plog.producers()[0]["producer_epoch"] == 5
    with pytest.raises(InvalidProducerEpochError):
        plog.append(txn(1, 1, epoch=3))
    assert plog.append(txn(1, 0, epoch=5)).base_offset == end + 2
    assert plog.ongoing_transactions() == {1: end + 2}


def test_a_duplicate_marker_is_written_and_ends_nothing(tmp_path):
    plog = open_log(tmp_path)
    plog.append(txn(1, 0))
    plog.append_marker(1, 0, False, 0)
    plog.append_marker(1, 0, False, 0)  # the coordinator's retry after a crash
    assert plog.log_end_offset == 3 and plog.last_stable_offset == 3
    assert plog.aborted_transactions(0, 3) == [(1, 0)]


def test_a_sequenceless_transactional_batch_opens_a_transaction(tmp_path):
    """The group coordinator's TxnOffsetCommit records (append(validate=False))."""
    plog = open_log(tmp_path)
    plog.append(plain())
    plog.append(txn(9, -1, epoch=2), validate=False)
    assert plog.ongoing_transactions() == {9: 1} and plog.last_stable_offset == 1
    with pytest.raises(InvalidProducerEpochError):
        plog.append(txn(9, -1, epoch=1), validate=False)
    plog.append_marker(9, 2, True, 0)
    assert plog.last_stable_offset == plog.high_watermark == 3


def test_a_plain_idempotent_batch_inside_a_transaction_is_refused(tmp_path):
    plog = open_log(tmp_path)
    plog.append(txn(1, 0))
    with pytest.raises(InvalidTxnStateError):
        plog.append(idem(1, 1))
    assert plog.log_end_offset == 1


def _scenario(plog):
    plog.append(txn(1, 0, 2))  # 0-1
    plog.append(txn(2, 0))  # 2
    plog.append_marker(1, 0, False, 7)  # 3
    plog.append(plain())  # 4
    plog.append(txn(3, 0))  # 5: open
    return plog.producers(), plog.aborted_transactions(0, 100)


def test_snapshot_round_trip(tmp_path):
    plog = open_log(tmp_path)
    producers, aborted = _scenario(plog)
    plog.close()
    snap = next((tmp_path / "t-0").glob("*.snapshot"))
    assert snap.read_bytes().splitlines()[0].endswith(b"v2")
    loaded = ps.load_snapshot(DiskMedium(str(tmp_path)), "t-0", 100)
    assert loaded[1].ongoing == {2: 2, 3: 5}
    plog = open_log(tmp_path, clean=True)
    assert plog.last_stable_offset == 2  # right at the first read after the restart
    assert plog.producers() == producers
    assert plog.aborted_transactions(0, 100) == aborted == [(1, 0)]


def test_an_old_format_snapshot_is_rebuilt_from_the_log(tmp_path):
    plog = open_log(tmp_path)
    producers, _ = _scenario(plog)
    plog.close()
    snap = next((tmp_path / "t-0").glob("*.snapshot"))
    from strom.storage import checkpoint
    snap.write_bytes(checkpoint.dump_lines(["offset 6", "producer 1 0 0,1,0,1"]))  # pre-v2
    plog = open_log(tmp_path, clean=True)
    assert plog.producers() == producers
    assert plog.last_stable_offset == 2


def _kill_mid_write(tmp_path, script):
    """Run `script` against the log in a child process that SIGKILLs itself."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_transactions import *
        plog = open_log(__import__("pathlib").Path({str(tmp_path)!r}), **{{"segment.bytes": "300"}})
    """) + textwrap.dedent(script) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          cwd=os.getcwd())
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_recovery_after_sigkill_rebuilds_the_index_and_open_transactions(tmp_path):
    _kill_mid_write(tmp_path, """
        plog.append(txn(1, 0, 2))
        for i in range(4):
            plog.append(plain())
        plog.append_marker(1, 0, False, 0)
        plog.append(txn(2, 0))
        plog.append(plain())
        plog.flush()
        plog.append(txn(3, 0))
        plog.append_marker(3, 0, False, 1)
        plog.append(txn(4, 0))
        d = plog.medium.root + "/" + plog.directory
        for f in os.listdir(d):  # as if nothing of the index reached the disk
            if f.endswith(".txnindex"):
                os.truncate(os.path.join(d, f), 0)
    """)
    plog = open_log(tmp_path, **{"segment.bytes": "300"})
    assert len(plog.segments) > 1
    assert plog.ongoing_transactions() == {2: 7, 4: 11}
    assert plog.last_stable_offset == 7
    assert plog.aborted_transactions(0, 100) == [(1, 0), (3, 9)]
    assert any((tmp_path / "t-0" / f).stat().st_size for f in txn_files(tmp_path))


@pytest.mark.parametrize("how", ["missing", "torn", "garbage", "past_the_segment", "huge"])
def test_a_damaged_txnindex_is_rebuilt(tmp_path, how):
    plog = open_log(tmp_path)
    _, aborted = _scenario(plog)
    plog.append_marker(2, 0, False, 0)
    aborted = plog.aborted_transactions(0, 100)
    assert aborted == [(1, 0), (2, 2)]
    plog.close()
    path = tmp_path / "t-0" / txn_files(tmp_path)[0]
    raw = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "torn":
        path.write_bytes(raw[:-3])
    elif how == "garbage":
        path.write_bytes(b"\xff" * len(raw))
    elif how == "past_the_segment":
        path.write_bytes(raw + ENTRY.pack(0, 5, 0, 10**9, 10**9))
    else:  # far more entries than the segment has room for: refused before it is read
        with open(path, "wb") as f:
            f.truncate(ENTRY_SIZE * 10**6)
    plog = open_log(tmp_path, clean=True)
    assert plog.aborted_transactions(0, 100) == aborted
    assert path.read_bytes() == raw  # the file is rewritten as it was
    assert plog.log_end_offset == 7  # and no data was touched


def test_retention_and_truncation_remove_entries(tmp_path):
    plog = open_log(tmp_path, **{"segment.bytes": "200"})
    plog.append(txn(1, 0))  # 0
    plog.append_marker(1, 0, False, 0)  # 1
    for _ in range(3):
        plog.append(plain())
    plog.append(txn(2, 0))
    mark = plog.append_marker(2, 0, False, 0).base_offset
    assert plog.aborted_transactions(0, 100) == [(1, 0), (2, mark - 1)]
    first_files = txn_files(tmp_path)
    plog.delete_records_before(3)
    assert plog.aborted_transactions(3, 100) == [(2, mark - 1)]
    assert txn_files(tmp_path) != first_files and f"{0:020d}.txnindex" not in txn_files(tmp_path)
    plog.truncate_to(mark)  # the marker goes: the transaction is open again
    assert plog.aborted_transactions(3, 100) == []
    assert plog.ongoing_transactions() == {2: mark - 1}
    assert plog.last_stable_offset == mark - 1
    plog.close()
    plog = open_log(tmp_path, clean=True)
    assert plog.aborted_transactions(3, 100) == [] and plog.last_stable_offset == mark - 1


def test_producer_expiry_keeps_open_transactions(tmp_path):
    plog = open_log(tmp_path)
    plog.append(idem(1, 0))  # timestamp TS
    plog.append(txn(2, 0))  # open
    plog.append(txn(3, 0))
    plog.append_marker(3, 0, True, 0, now=TS + 50_000)
    assert plog.expire_producers(now=TS + 10_000, expiration_ms=5_000) == 1  # producer 1
    assert [p["producer_id"] for p in plog.producers()] == [2, 3]
    assert plog.expire_producers(now=TS + 10**9, expiration_ms=5_000) == 1  # 3; 2 is open
    assert [p["producer_id"] for p in plog.producers()] == [2]


def test_the_maintenance_pass_expires_idle_producers(tmp_path):
    from strom.broker.config import BrokerConfig
    from strom.storage import LogManager

    assert BrokerConfig().producer_id_expiration_ms == 86_400_000  # Kafka's default
    cfg = BrokerConfig.load(env={}, **{"producer.id.expiration.ms": "60000"})
    mgr = LogManager(str(tmp_path), maintenance_interval_s=3600,
                     producer_id_expiration_ms=cfg.producer_id_expiration_ms)
    try:
        mgr.create_topic("t", 1)
        plog = mgr.get_log("t", 0)
        plog.append(idem(1, 0))
        plog.append(txn(2, 0))
        mgr.run_maintenance(now=TS + 30_000)
        assert [p["producer_id"] for p in plog.producers()] == [1, 2]
        mgr.run_maintenance(now=TS + 61_000)
        assert [p["producer_id"] for p in plog.producers()] == [2]  # its transaction is open
    finally:
        mgr.close()


def test_the_lso_is_never_below_the_log_start(tmp_path):
    plog = open_log(tmp_path, **{"segment.bytes": "200"})
    plog.append(txn(1, 0))  # 0: open, then deleted under it
    for _ in range(6):
        plog.append(plain())
    plog.delete_records_before(4)
    assert plog.ongoing_transactions() == {1: 0}
    assert plog.last_stable_offset == plog.log_start_offset == 4


def test_an_unclean_rebuild_starts_from_the_snapshot_kept_below_the_active_segment(
        tmp_path, caplog):
    plog = open_log(tmp_path, **{"segment.bytes": "300"})
    for i in range(3):
        plog.append(txn(1, i))
        plog.append_marker(1, 0, i % 2 == 0, 0)
        plog.flush()
        plog.snapshot_producers()  # the maintenance pass, once a segment
    plog.roll()
    plog.append(txn(2, 0))
    plog.flush()
    assert plog.snapshot_producers()
    snaps = sorted(p.name for p in (tmp_path / "t-0").glob("*.snapshot"))
    # the newest, and the newest at or below each of the last three segment bases
    assert len(snaps) == 3
    active_base = plog.active.base_offset
    plog.append(txn(3, 0))
    plog.append_marker(3, 0, False, 0)
    expected = plog.aborted_transactions(0, 100)
    # no close: an unclean stop; recovery starts at the active segment
    caplog.set_level("INFO")
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig(
        {"retention.ms": "-1", "segment.bytes": "300"}), recovery_point=active_base)
    assert plog.aborted_transactions(0, 100) == expected
    assert plog.ongoing_transactions() == {2: active_base}
    (line,) = [m for m in caplog.messages if "rebuilt the transaction index" in m]
    assert f"from offset {active_base}" in line and "(state from offset -1)" not in line


def test_an_unclean_rebuild_behind_two_rolls_starts_from_a_snapshot_near_it(tmp_path, caplog):
    """The checkpointed recovery point lags the last two rolls: the rebuild
    starts from the snapshot kept for that older segment, not the log start."""
    plog = open_log(tmp_path)
    for i in range(4):
        plog.append(txn(1, i))
        plog.append_marker(1, 0, i % 2 == 0, 0)
        plog.roll()
        plog.flush()
        assert plog.snapshot_producers()  # at each segment base: 2, 4, 6, 8
    plog.append(txn(2, 0))  # 8
    plog.append_marker(2, 0, False, 0)  # 9
    expected = plog.aborted_transactions(0, 100)
    assert expected == [(1, 2), (1, 6), (2, 8)]
    caplog.set_level("INFO")
    # no close: an unclean stop whose checkpoint still says 4
    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig({"retention.ms": "-1"}),
                        recovery_point=4)
    assert plog.aborted_transactions(0, 100) == expected
    (line,) = [m for m in caplog.messages if "rebuilt the transaction index" in m]
    assert "from offset 4 (state from offset 4)" in line


def test_an_expired_producer_goes_on_at_its_next_sequence(tmp_path):
    """Kafka accepts any sequence from a producer it does not know: one
    whose state expired while it was idle is not failed with
    OutOfOrderSequence on its next send."""
    plog = open_log(tmp_path)
    plog.append(idem(1, 0, 3))
    assert plog.expire_producers(now=TS + 10**9, expiration_ms=1000) == 1
    assert plog.append(idem(1, 3)).base_offset == 3
    assert plog.producers()[0]["last_sequence"] == 3


def test_a_failed_write_opens_no_transaction(tmp_path):
    """append registers a transaction before the write (the LSO is read
    without the lock); a write that fails takes it back."""
    from strom.storage.errors import LogWriteError

    from .test_log import on_dev_full

    plog = open_log(tmp_path)
    plog.append(plain())
    with on_dev_full(plog):
        with pytest.raises(LogWriteError):
            plog.append(txn(1, 0))
    assert plog.ongoing_transactions() == {} and plog.last_stable_offset == 1
    assert plog.append(txn(1, 0)).base_offset == 1  # the retry
    assert plog.ongoing_transactions() == {1: 1} and plog.last_stable_offset == 1


def test_a_damaged_abort_marker_cut_from_the_end_takes_its_entry_along(tmp_path):
    plog = open_log(tmp_path)
    plog.append(txn(1, 0, 2))
    mark = plog.append_marker(1, 0, False, 0).base_offset
    assert plog.aborted_transactions(0, 10) == [(1, 0)]
    plog.close()
    seg_log = tmp_path / "t-0" / f"{0:020d}.log"
    raw = bytearray(seg_log.read_bytes())
    raw[-3] ^= 0xFF  # inside the marker's record: its CRC fails
    seg_log.write_bytes(bytes(raw))
    plog = open_log(tmp_path, clean=True)
    assert plog.log_end_offset == mark  # the torn end is cut, as after a crash
    assert plog.aborted_transactions(0, 10) == []
    assert plog.ongoing_transactions() == {1: 0} and plog.last_stable_offset == 0


def test_a_huge_snapshot_is_not_read(tmp_path, monkeypatch):
    plog = open_log(tmp_path)
    producers, _ = _scenario(plog)
    plog.close()
    snap = next((tmp_path / "t-0").glob("*.snapshot"))
    monkeypatch.setattr(ps, "MAX_SNAPSHOT_BYTES", snap.stat().st_size - 1)
    read, real_read = [], DiskMedium.read
    monkeypatch.setattr(DiskMedium, "read", lambda self, path: read.append(path) or real_read(self, path))
    plog = open_log(tmp_path, clean=True)
    assert plog.producers() == producers  # from the log
    assert not any(p.endswith(".snapshot") for p in read) and not snap.exists()


def test_the_new_errors_map_to_kafkas_codes():
    from kio.schema.errors import ErrorCode

    from strom.broker.handlers.errors import error_code

    assert error_code(CoordinatorFencedError("x")) == ErrorCode.transaction_coordinator_fenced
    assert error_code(InvalidTxnStateError("x")) == ErrorCode.invalid_txn_state
    assert error_code(InvalidProducerEpochError("x")) == ErrorCode.invalid_producer_epoch
    # a coordinator that drops a marker refused for a stale epoch drops this one too
    assert issubclass(CoordinatorFencedError, InvalidProducerEpochError)
