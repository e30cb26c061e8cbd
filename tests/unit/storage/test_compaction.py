import pytest

from strom.records import Compression, Record, build_batch
from strom.records.batch import BatchHeader
from strom.storage import LogConfig, PartitionLog, cleaner

from .helpers import read_all

NOW = 10_000_000


def compacted_log(medium, **extra):
    cfg = {"cleanup.policy": "compact", "segment.bytes": "600", "retention.ms": "-1",
           "delete.retention.ms": "1000", **extra}
    return PartitionLog(medium, "c-0", LogConfig(cfg))


def put(plog, key, value, ts, compression=Compression.NONE):
    plog.append(build_batch([Record(key, value, ts)], compression=compression))


@pytest.mark.parametrize("codec", list(Compression))
def test_keeps_the_latest_record_per_key_with_offsets(medium_factory, codec):
    plog = compacted_log(medium_factory())
    batches = []
    for i in range(60):
        recs = [Record(b"k%d" % ((i * 2 + j) % 7), b"v%d-%d" % (i, j), NOW - 100_000 + i) for j in range(2)]
        plog.append(build_batch(recs, compression=codec))
        batches.append(recs)
    before = read_all(plog)
    active_base = plog.active.base_offset
    removed = cleaner.clean(plog, NOW)
    assert removed > 0
    after = read_all(plog)
    # As Kafka: the active segment is past the first uncleanable offset, its
    # records supersede nothing yet.
    latest = {}
    for r in before:
        if r.offset < active_base:
            latest[r.key] = r.offset
    for r in after:
        if r.offset < active_base:
            assert latest[r.key] == r.offset, "only the latest record per key survives"
    # The active segment is untouched; offsets keep their values (gaps allowed).
    assert [r for r in after if r.offset >= active_base] == [r for r in before if r.offset >= active_base]
    assert {r.key: r.value for r in after} == {r.key: r.value for r in before}
    assert plog.log_end_offset == 120
    for seg in plog.segments[:-1]:
        for _, header, _raw in seg.batches():
            assert header.compression == codec or not header.records_count  # empty: no codec


def test_tombstones_go_after_delete_retention(medium_factory):
    plog = compacted_log(medium_factory())
    put(plog, b"a", b"1", NOW - 50_000)
    put(plog, b"a", None, NOW - 500)  # recent tombstone: kept
    put(plog, b"b", b"1", NOW - 50_000)
    put(plog, b"b", None, NOW - 5_000)  # old tombstone: dropped
    for i in range(20):
        put(plog, b"filler%d" % i, b"x" * 40, NOW - 400)
    plog.roll()
    put(plog, b"z", b"active", NOW)
    cleaner.clean(plog, NOW)
    keys = [(r.key, r.value) for r in read_all(plog) if r.key in (b"a", b"b")]
    assert keys == [(b"a", None)]


def test_min_compaction_lag(medium_factory):
    plog = compacted_log(medium_factory(), **{"min.compaction.lag.ms": "60000"})
    for i in range(30):
        put(plog, b"same", b"%d" % i + b"x" * 40, NOW - 1000)
    assert cleaner.clean(plog, NOW) == 0  # too young
    assert cleaner.clean(plog, NOW + 120_000) > 0


def test_compaction_and_retention_together(medium_factory):
    plog = PartitionLog(medium_factory(), "c-0", LogConfig({
        "cleanup.policy": "compact,delete", "segment.bytes": "400", "retention.ms": "60000",
    }))
    for i in range(20):
        put(plog, b"k%d" % (i % 3), b"old" + b"x" * 40, NOW - 120_000)
    for i in range(20):
        put(plog, b"k%d" % (i % 3), b"new" + b"x" * 40, NOW - 1000 + i)
    cleaner.clean(plog, NOW)
    plog.apply_retention(NOW)
    survivors = read_all(plog)
    assert all(r.value.startswith(b"new") for r in survivors)
    assert {r.key for r in survivors} == {b"k0", b"k1", b"k2"}


def test_compacted_log_reopens(medium_factory):
    medium = medium_factory()
    plog = compacted_log(medium)
    for i in range(40):
        put(plog, b"k%d" % (i % 4), b"%d" % i + b"y" * 30, NOW - 10_000)
    cleaner.clean(plog, NOW)
    expected = read_all(plog)
    plog.close()
    again = compacted_log(medium)
    assert read_all(again) == expected
    first = BatchHeader.parse(again.read(again.log_start_offset, 100))
    assert first.base_offset >= 0


def producer_batch(pid, seq, records, epoch=0):
    return build_batch(records, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def state(plog):
    return {pid: (e.epoch, list(e.batches)) for pid, e in plog.producer_state.producers.items()}


def test_producer_state_after_compaction_and_restart_is_what_it_was(medium_factory):
    """Tombstones, overwritten keys and multi-record batches compacted away:
    the state rebuilt from the log at load is the one before (item 7)."""
    medium = medium_factory()
    plog = compacted_log(medium, **{"delete.retention.ms": "0"})
    seq = 0
    for i in range(30):
        recs = [Record(b"k%d" % (i % 3), b"v%d" % i + b"x" * 30, NOW - 50_000 + i),
                Record(b"k%d" % ((i + 1) % 3), None, NOW - 50_000 + i)]  # a tombstone
        plog.append(producer_batch(7, seq, recs))
        seq += 2
    plog.append(producer_batch(8, 0, [Record(b"other", b"1", NOW - 50_000)]))
    for i in range(3):
        put(plog, b"k%d" % i, b"final", NOW - 40_000)  # supersedes all of producer 7's records
    plog.roll()
    before = state(plog)
    assert cleaner.clean(plog, NOW) > 0
    plog.close()
    again = compacted_log(medium, **{"delete.retention.ms": "0"})
    assert state(again) == before
    # Every batch of the window is still recognised as a retry, with its offsets.
    for first_seq, last_seq, base, last in before[7][1]:
        recs = [Record(b"r", b"x", NOW)] * (last_seq - first_seq + 1)
        result = again.append(producer_batch(7, first_seq, recs))
        assert result.duplicate and (result.base_offset, result.last_offset) == (base, last)
    assert not again.append(producer_batch(7, seq, [Record(b"k0", b"next", NOW)])).duplicate
    assert {r.key: r.value for r in read_all(again)}[b"k0"] == b"next"


def test_cleaned_segments_are_merged_not_left_empty(medium_factory):
    """Item 8: one key overwritten 300 times across many segments leaves a
    handful of segments, none of them empty, and the start stays put."""
    medium = medium_factory()
    plog = compacted_log(medium, **{"segment.bytes": "1000"})
    for i in range(300):
        put(plog, b"k%d" % (i % 2), b"%d" % i + b"x" * 40, NOW - 100_000 + i)
    plog.roll()
    segments = len(plog.segments)
    assert segments > 30
    cleaner.clean(plog, NOW)
    assert len(plog.segments) == 2, plog.bases  # one pass: the cleaned one and the active one
    assert not [s for s in plog.segments[:-1] if s.is_empty]
    values = {r.key: r.value for r in read_all(plog)}
    assert values == {b"k0": b"298" + b"x" * 40, b"k1": b"299" + b"x" * 40}
    assert plog.log_start_offset == 0 and plog.log_end_offset == 300
    plog.close()
    again = compacted_log(medium, **{"segment.bytes": "1000"})
    again.apply_retention(NOW)
    assert (again.log_start_offset, again.log_end_offset) == (0, 300)
    assert {r.key: r.value for r in read_all(again)} == values


def test_an_interrupted_group_swap_is_finished_at_load(tmp_path):
    """A crash after `.swap` was complete but before the merged segments
    were deleted: the load deletes what the swap covers."""
    from strom.storage.files import DiskMedium

    plog = compacted_log(DiskMedium(str(tmp_path)))
    for i in range(30):
        put(plog, b"k%d" % i, b"v" * 40, NOW - 1000)
    plog.roll()
    bases = plog.bases
    assert len(bases) >= 4
    expected = read_all(plog)
    plog.close()
    d = tmp_path / "c-0"
    merged = b"".join((d / f"{b:020d}.log").read_bytes() for b in bases[:3])
    (d / f"{bases[0]:020d}.log.swap").write_bytes(merged)
    (d / f"{bases[2]:020d}.log").unlink()  # the crash came while deleting the others
    again = compacted_log(DiskMedium(str(tmp_path)))
    assert again.bases == [bases[0], *bases[3:]]
    assert read_all(again) == expected
