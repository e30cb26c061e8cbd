"""Races and crash windows between the maintenance thread and the others,
driven step by step on real files (found in review)."""

import pytest

from strom.records import Record, build_batch
from strom.storage import LogConfig, PartitionLog, cleaner, files
from strom.storage.errors import LogWriteError
from strom.storage.files import DiskMedium

from .helpers import read_all

NOW = 10_000_000


def compacted_log(medium):
    cfg = {"cleanup.policy": "compact", "segment.bytes": "100000", "retention.ms": "-1",
           "min.compaction.lag.ms": "0"}
    return PartitionLog(medium, "c-0", LogConfig(cfg))


def put(plog, key, ts=NOW - 1000):
    plog.append(build_batch([Record(key, b"v" * 40, ts)]))


def test_a_swap_refused_because_delete_records_moved_the_log_leaves_no_swap_file(tmp_path):
    """The cleaner snapshots [A, B]; DeleteRecords (a request thread) then
    deletes A; the swap is refused. The `.swap` it had already renamed into
    place must go: left there, the next load 'finishes' it, resurrecting A
    over B, and B (by then a later compaction of B, C) is deleted as covered,
    with C's records."""
    plog = compacted_log(DiskMedium(str(tmp_path)))
    for seg_keys in ([b"a0", b"a1"], [b"b0", b"b1"], [b"c0", b"c1"]):
        for k in seg_keys:
            put(plog, k)
        plog.roll()
    put(plog, b"d0")
    a, b = plog.segments[0], plog.segments[1]
    # What the cleaner wrote for the group [A, B] (nothing to remove: a merge).
    cleaned = a.path(files.LOG_SUFFIX + files.CLEANED_SUFFIX)
    out = plog.medium.open(cleaned)
    data = [a.log_file.pread(0, a.size), b.log_file.pread(0, b.size)]
    out.append(data, sum(map(len, data)))
    out.sync()
    out.close()
    plog.delete_records_before(b.base_offset)  # deletes A meanwhile
    assert plog.bases[0] == b.base_offset
    with pytest.raises(LogWriteError):
        plog.replace_segments([a, b], cleaned)
    left = [n for n in plog.medium.listdir("c-0") if n.endswith(files.SWAP_SUFFIX)]
    assert left == []
    expected = {r.key for r in read_all(plog)}
    assert expected == {b"b0", b"b1", b"c0", b"c1", b"d0"}
    cleaner.clean(plog, NOW)  # merges B and C into B
    plog.close()
    again = compacted_log(DiskMedium(str(tmp_path)))
    assert {r.key for r in read_all(again)} >= expected
    again.close()


def _deleted_and_recreated(tmp_path, cfg):
    """A log closed and its directory renamed to a delete marker (DeleteTopics),
    then a new log of the same name written (a create right after): the
    maintenance thread may still hold the old one."""
    medium = DiskMedium(str(tmp_path))
    old = PartitionLog(medium, "t-0", LogConfig(cfg))
    for i in range(3):
        put(old, b"old%d" % i, ts=1000)
        old.roll()
    put(old, b"old-active", ts=1000)
    old.close()
    medium.rename("t-0", files.delete_dir_name("t", 0, "0" * 32))
    new = PartitionLog(medium, "t-0", LogConfig(cfg))
    for i in range(3):
        put(new, b"new%d" % i, ts=NOW)
    new.flush()
    return medium, old, new


def test_retention_of_a_closed_log_deletes_nothing_of_its_successor(tmp_path):
    cfg = {"retention.ms": "1000"}
    medium, old, new = _deleted_and_recreated(tmp_path, cfg)
    old.apply_retention(NOW)  # the maintenance pass that had listed it
    new.close()
    again = PartitionLog(medium, "t-0", LogConfig(cfg))
    assert [r.key for r in read_all(again)] == [b"new0", b"new1", b"new2"]
    again.close()


def test_a_swap_into_a_closed_log_touches_nothing_of_its_successor(tmp_path):
    cfg = {"cleanup.policy": "compact", "retention.ms": "-1"}
    medium, old, new = _deleted_and_recreated(tmp_path, cfg)
    group = old.segments[:2]
    # The cleaner read the group before the delete; it writes its output after.
    cleaned = group[0].path(files.LOG_SUFFIX + files.CLEANED_SUFFIX)
    out = medium.open(cleaned)
    data = [build_batch([Record(b"old%d" % i, b"v", 1000)]) for i in range(2)]
    out.append(data, sum(map(len, data)))
    out.sync()
    out.close()
    with pytest.raises(LogWriteError):
        old.replace_segments(group, cleaned)
    assert old.snapshot_producers() is False
    new.close()
    again = PartitionLog(medium, "t-0", LogConfig(cfg))
    assert [r.key for r in read_all(again)] == [b"new0", b"new1", b"new2"]
    again.close()


def _wait_in(thread, function: str, deadline_s: float = 5.0) -> None:
    """Until `thread` is inside `function` (blocked there on the log's lock)."""
    import sys
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == function:
                return
            frame = frame.f_back
        time.sleep(0.001)
    raise AssertionError(f"{thread.name} never reached {function}")


def test_a_torn_write_seen_by_the_cleaner_costs_no_acknowledged_batch(tmp_path):
    """The cleaner reads the active segment's headers without the log's lock.
    A write torn by a full disk (its size counts the bytes that reached the
    file) looks like damage to it; by the time it holds the lock the append
    was cut back and the producer's retry written and fsynced. Reporting the
    damage then must not cut that acknowledged batch."""
    import threading

    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig({}))
    for i in range(3):
        put(plog, b"k%d" % i)
    plog.flush()
    seg = plog.active
    pos, end = seg.size, plog.log_end_offset
    retry = build_batch([Record(b"retried", b"v" * 40, NOW)], base_offset=end)
    scanned = []
    with plog._lock:  # the event loop's append
        seg.log_file.append([retry[:30]], 30)  # a short write: ENOSPC after 30 bytes
        cleaner_thread = threading.Thread(target=lambda: scanned.extend(seg.batches()),
                                          name="cleaner")
        cleaner_thread.start()
        _wait_in(cleaner_thread, "_found_damage")
        seg.log_file.truncate(pos)  # _write_failed cuts it back
        plog.append(retry)  # the producer's retry succeeds
        plog.flush()  # acks=all: acknowledged
    cleaner_thread.join(5)
    assert not cleaner_thread.is_alive()
    assert plog.log_end_offset == end + 1
    assert [r.key for r in read_all(plog)] == [b"k0", b"k1", b"k2", b"retried"]
    plog.close()


def test_a_load_killed_while_it_finishes_a_swap_can_load_again(tmp_path):
    """A crash left a complete `.swap` of a merged group. The next load is
    itself killed (SIGKILL) while it recovers the segments: the one after
    that must still start, with every record, not stop at 'segments overlap'
    (the first load renamed the `.swap` before deleting what it covers)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from strom.records.batch import BatchHeader

    root = str(tmp_path)
    plog = PartitionLog(DiskMedium(root), "c-0", LogConfig({"cleanup.policy": "compact"}))
    for seg_keys in ([b"a0", b"a1"], [b"b0", b"b1"], [b"c0", b"c1"]):
        for k in seg_keys:
            put(plog, k)
        plog.roll()
    bases = plog.bases
    # A long active segment, so that recovering it keeps the next load busy.
    one = bytearray(build_batch([Record(b"d", b"v", NOW)]))
    size = BatchHeader.parse(one).size
    start = plog.log_end_offset
    out = bytearray()
    for i in range(60_000):
        one[0:8] = (start + i).to_bytes(8, "big")
        out += one
    plog.active.log_file.append([bytes(out)], len(out))
    assert len(out) == 60_000 * size
    plog.close()
    d = tmp_path / "c-0"
    merged = b"".join((d / f"{b:020d}.log").read_bytes() for b in bases[:3])
    swap = d / f"{bases[0]:020d}.log.swap"
    swap.write_bytes(merged)
    code = ("import sys; from strom.storage import LogConfig, PartitionLog; "
            "from strom.storage.files import DiskMedium; PartitionLog(DiskMedium(sys.argv[1]), "
            "'c-0', LogConfig({'cleanup.policy': 'compact'}))")
    proc = subprocess.Popen([sys.executable, "-c", code, root])
    try:
        deadline = time.monotonic() + 20
        while swap.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the load ended before it could be killed"
    again = PartitionLog(DiskMedium(root), "c-0", LogConfig({"cleanup.policy": "compact"}))
    keys = [r.key for r in read_all(again)]
    assert keys[:6] == [b"a0", b"a1", b"b0", b"b1", b"c0", b"c1"]
    assert len(keys) == 6 + 60_000
    again.close()


@pytest.mark.parametrize("lookup", ["offset_for_timestamp", "max_timestamp_offset"])
def test_a_cut_found_by_a_time_lookup_lowers_the_recovery_point(tmp_path, lookup):
    """Damage at the end of the active segment found by ListOffsets is cut
    off. The recovery point must come down with the log end: left above it,
    the batches appended next (at the same offsets) count as fsynced, and an
    acks=all produce is answered before they are (waits.py, flusher.py)."""
    import os

    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig({}))
    for i in range(3):
        put(plog, b"k%d" % i, ts=1000 * (i + 1))
    plog.flush()
    last = plog.active.find_position(2)
    fd = os.open(str(tmp_path / "t-0" / f"{0:020d}.log"), os.O_WRONLY)
    try:
        os.pwrite(fd, b"\x07", last + 16)  # the last batch's magic byte, flipped on disk
    finally:
        os.close(fd)
    if lookup == "offset_for_timestamp":
        plog.offset_for_timestamp(2500)
    else:
        plog.max_timestamp_offset()
    assert plog.log_end_offset == 2  # cut
    put(plog, b"new", ts=4000)
    assert plog.recovery_point < plog.log_end_offset, "an unfsynced batch counts as durable"
    plog.close()


def test_retention_and_delete_records_at_once_delete_each_segment_once(tmp_path):
    """The maintenance pass's retention and a DeleteRecords (a request
    thread) both count the same two old segments, then both wait for the
    flusher's fsync (`_flush_lock`): each must delete those two, not the
    next two as well, which hold records above the log start."""
    import threading

    from strom.storage.log import now_ms

    plog = PartitionLog(DiskMedium(str(tmp_path)), "t-0", LogConfig({"retention.ms": "60000"}))
    now = now_ms()
    for k, ts in ((b"old0", 1000), (b"old1", 1000), (b"new0", now), (b"new1", now)):
        put(plog, k, ts=ts)
        plog.roll()
    put(plog, b"active", ts=now)
    plog.flush()
    start = plog.segments[2].base_offset
    threads = [threading.Thread(target=plog.apply_retention, args=(now,), name="maintenance"),
               threading.Thread(target=plog.delete_records_before, args=(start,), name="request")]
    with plog._flush_lock:  # the flusher's fsync in flight
        for t in threads:
            t.start()
            _wait_in(t, "_delete_prefix")
    for t in threads:
        t.join(5)
    assert plog.log_start_offset == start
    assert [r.key for r in read_all(plog)] == [b"new0", b"new1", b"active"]
    plog.close()
