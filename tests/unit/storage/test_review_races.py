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
